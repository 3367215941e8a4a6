//! A slot's configuration file, generated from the directory: what the
//! machine supervisor writes before it starts a slot, and rewrites (and
//! restarts the slot) when the directory changes what the slot should be.
//!
//! - `data`: the slot's data directory (relative ones under the cluster's
//!   `slots_dir`);
//! - `[imap]`, `[lmtp]`: the slot's ports on its machine's address;
//! - `[sync]` (for a slot in a store): the store, the slot's role (the
//!   store's first slot is the master), the cluster's name (bound in the
//!   replication handshake), the store's epoch, the sync
//!   listener on the machine's address, the cluster secret, and on the
//!   master the replicas in failover order with their sync addresses, and
//!   `durable` (the store's `sync` flag: durable delivery, with the cluster
//!   file's `[slot] durable_wait_ms` and `durable_on_timeout` if set);
//! - `[tls]` when the cluster file names a certificate.
//!
//! A fenced slot (an old master replaced by a failover, docs/failover.md)
//! gets `role = "fenced"`: it runs no sync listener, so the master, which
//! still lists it as a replica (so that lifting the fence does not restart
//! the master), cannot reach it.
//!
//! A slot in no store gets no `[sync]` section: it serves nobody until a
//! store takes it, which changes its configuration.

use crate::cluster::Cluster;
use serde::Serialize;
use slotmail_directory::Topology;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Serialize)]
struct File {
    version: u32,
    name: String,
    data: PathBuf,
    hostname: String,
    imap: Imap,
    lmtp: Lmtp,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync: Option<Sync>,
}

#[derive(Serialize)]
struct Imap {
    listen: SocketAddr,
    allow_plaintext_auth: bool,
}

#[derive(Serialize)]
struct Lmtp {
    listen: SocketAddr,
}

#[derive(Serialize)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Serialize)]
struct Sync {
    cluster: String,
    store: String,
    role: &'static str,
    epoch: u64,
    listen: SocketAddr,
    secret_file: PathBuf,
    /// The store's `sync` flag: durable delivery.
    durable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    durable_wait_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    durable_on_timeout: Option<String>,
    replicas: Vec<Peer>,
}

#[derive(Serialize)]
struct Peer {
    slot: String,
    address: SocketAddr,
}

/// The configuration text of every slot of `machine`, by slot id. Slots
/// whose machine or peers are missing from the topology are left out (the
/// directory never holds such slots; a snapshot is consistent).
pub fn machine_slot_configs(
    cluster: &Cluster,
    topology: &Topology,
    machine: &str,
) -> BTreeMap<String, String> {
    topology
        .slots_on(machine)
        .filter_map(|slot| Some((slot.id.clone(), slot_config(cluster, topology, &slot.id)?)))
        .collect()
}

/// The configuration text of one slot, or `None` if the slot (or its
/// machine) is not in the topology.
pub fn slot_config(cluster: &Cluster, topology: &Topology, slot_id: &str) -> Option<String> {
    let slot = topology.slots.get(slot_id)?;
    let address = topology.machines.get(&slot.machine)?.address;
    let sync = match topology.store_of_slot(slot_id) {
        None => None,
        Some(store) => {
            let is_master = store.master() == slot_id;
            let replicas = if is_master {
                store
                    .replicas()
                    .iter()
                    .filter_map(|r| {
                        let s = topology.slots.get(r)?;
                        let a = topology.machines.get(&s.machine)?.address;
                        let address = match cluster.sync_via.get(r) {
                            Some(via) => *via,
                            None => SocketAddr::new(a, s.sync_port),
                        };
                        Some(Peer {
                            slot: r.clone(),
                            address,
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Some(Sync {
                cluster: cluster.name.clone(),
                store: store.id.clone(),
                role: if is_master {
                    "master"
                } else if topology.is_fenced(slot_id) {
                    "fenced"
                } else {
                    "replica"
                },
                epoch: store.epoch,
                listen: SocketAddr::new(address, slot.sync_port),
                secret_file: cluster.secret_file.clone(),
                durable: store.sync,
                durable_wait_ms: cluster.slot.durable_wait_ms,
                durable_on_timeout: cluster.slot.durable_on_timeout.clone(),
                replicas,
            })
        }
    };
    let file = File {
        version: slotmail_slot::config::CONFIG_VERSION,
        name: slot.id.clone(),
        data: cluster.slot_data_dir(&slot.data_dir),
        hostname: format!("{}.{}", slot.id, cluster.name),
        imap: Imap {
            listen: SocketAddr::new(address, slot.imap_port),
            allow_plaintext_auth: cluster.slot.allow_plaintext_auth,
        },
        lmtp: Lmtp {
            listen: SocketAddr::new(address, slot.lmtp_port),
        },
        tls: match (&cluster.slot.tls_cert, &cluster.slot.tls_key) {
            (Some(cert), Some(key)) => Some(Tls {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        sync,
    };
    let body = toml::to_string(&file).expect("slot configs serialize");
    Some(format!(
        "# generated by `slotmail machine run` from the cluster directory; do not edit\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{PortScheme, SlotDefaults};
    use slotmail_directory::{Machine, Slot, Store};
    use slotmail_slot::config::Role;
    use std::path::Path;

    fn cluster() -> Cluster {
        Cluster {
            file: "/c/cluster.toml".into(),
            name: "test".into(),
            directory: "/c/directory.db".into(),
            secret_file: "/c/cluster.secret".into(),
            slots_dir: "/c/slots".into(),
            state_dir: "/c/state".into(),
            check_password_file: "/c/check.password".into(),
            ports: PortScheme::default(),
            slot: SlotDefaults {
                allow_plaintext_auth: true,
                ..Default::default()
            },
            sync_via: Default::default(),
        }
    }

    fn topology() -> Topology {
        let mut t = Topology::default();
        for (name, ip) in [
            ("a", "127.0.0.11"),
            ("b", "127.0.0.12"),
            ("c", "127.0.0.13"),
        ] {
            t.machines.insert(
                name.into(),
                Machine {
                    name: name.into(),
                    address: ip.parse().unwrap(),
                },
            );
            t.slots.insert(
                format!("{name}1"),
                Slot {
                    id: format!("{name}1"),
                    machine: name.into(),
                    data_dir: format!("{name}/{name}1"),
                    imap_port: 1143,
                    lmtp_port: 2424,
                    sync_port: 2500,
                    weight: 1,
                },
            );
        }
        t.stores.insert(
            "s001".into(),
            Store {
                id: "s001".into(),
                slots: vec!["a1".into(), "b1".into()],
                epoch: 3,
                sync: false,
                last_check: None,
            },
        );
        t
    }

    #[test]
    fn master_replica_and_free_slot_configs_parse_as_slot_configs() {
        let (c, t) = (cluster(), topology());
        let path = Path::new("/c/state/a/a1.toml");
        let master =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "a1").unwrap(), path).unwrap();
        assert_eq!(master.data, Path::new("/c/slots/a/a1"));
        assert_eq!(
            master.imap.as_ref().unwrap().listen,
            "127.0.0.11:1143".parse().unwrap()
        );
        assert!(master.imap.unwrap().allow_plaintext_auth);
        let sync = master.sync.unwrap();
        assert_eq!(sync.role, Role::Master);
        assert_eq!(sync.epoch, 3);
        assert_eq!(sync.store, "s001");
        assert_eq!(sync.cluster, "test");
        assert_eq!(sync.replicas.len(), 1);
        assert_eq!(sync.replicas[0].slot, "b1");
        assert_eq!(sync.replicas[0].address, "127.0.0.12:2500".parse().unwrap());
        assert_eq!(sync.secret_file, Path::new("/c/cluster.secret"));
        assert_eq!(sync.durable, None);

        let replica =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "b1").unwrap(), path).unwrap();
        let sync = replica.sync.unwrap();
        assert_eq!(sync.role, Role::Replica);
        assert!(sync.replicas.is_empty());
        assert_eq!(sync.listen, Some("127.0.0.12:2500".parse().unwrap()));

        let free =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "c1").unwrap(), path).unwrap();
        assert!(free.sync.is_none());
        assert_eq!(slot_config(&c, &t, "zz"), None);

        // A fenced slot: role fenced; the master keeps it in its list.
        let mut t = t;
        t.stores.get_mut("s001").unwrap().slots = vec!["b1".into(), "a1".into()];
        t.fenced.insert(
            "a1".into(),
            slotmail_directory::Fence {
                slot: "a1".into(),
                store: "s001".into(),
                epoch: 4,
                at_unix_ms: 0,
                reason: "failover".into(),
            },
        );
        let fenced =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "a1").unwrap(), path).unwrap();
        assert_eq!(fenced.sync.unwrap().role, Role::Fenced);
        let master =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "b1").unwrap(), path).unwrap();
        assert_eq!(master.sync.unwrap().replicas[0].slot, "a1");
        assert_eq!(machine_slot_configs(&c, &t, "b").len(), 1);
    }

    #[test]
    fn a_store_with_sync_gets_durable_delivery() {
        let mut c = cluster();
        c.slot.durable_wait_ms = Some(750);
        c.slot.durable_on_timeout = Some("accept".into());
        let mut t = topology();
        t.stores.get_mut("s001").unwrap().sync = true;
        let text = slot_config(&c, &t, "a1").unwrap();
        let master = slotmail_slot::SlotConfig::parse(&text, Path::new("/c/a1.toml")).unwrap();
        let durable = master.sync.unwrap().durable.unwrap();
        assert_eq!(durable.wait, std::time::Duration::from_millis(750));
        assert_eq!(durable.on_timeout, slotmail_slot::config::OnTimeout::Accept);
        // Defaults when the cluster file does not say.
        let text = slot_config(&cluster(), &t, "a1").unwrap();
        let master = slotmail_slot::SlotConfig::parse(&text, Path::new("/c/a1.toml")).unwrap();
        let durable = master.sync.unwrap().durable.unwrap();
        assert_eq!(
            durable.on_timeout,
            slotmail_slot::config::OnTimeout::Tempfail
        );
    }

    #[test]
    fn sync_via_redirects_the_masters_dial_not_the_replicas_listener() {
        let mut c = cluster();
        c.sync_via
            .insert("b1".into(), "127.0.0.99:4000".parse().unwrap());
        let t = topology();
        let path = Path::new("/c/state/a/a1.toml");
        let master =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "a1").unwrap(), path).unwrap();
        let sync = master.sync.unwrap();
        assert_eq!(sync.replicas[0].address, "127.0.0.99:4000".parse().unwrap());
        let replica =
            slotmail_slot::SlotConfig::parse(&slot_config(&c, &t, "b1").unwrap(), path).unwrap();
        assert_eq!(
            replica.sync.unwrap().listen,
            Some("127.0.0.12:2500".parse().unwrap())
        );
        // The cluster file round-trips the table.
        let text = "version = 1\nname = \"t\"\ndirectory = \"d.db\"\nsecret_file = \"s\"\n\
             slots_dir = \"slots\"\nstate_dir = \"state\"\n\n[sync_via]\nb1 = \"127.0.0.99:4000\"\n";
        let parsed = Cluster::parse(text, Path::new("/c/cluster.toml")).unwrap();
        assert_eq!(parsed.sync_via, c.sync_via);
    }
}
