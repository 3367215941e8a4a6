//! Property tests.
//!
//! * `parse_command(encode(cmd)) == cmd` for generated commands, in every
//!   literal mode and mailbox encoding, including the synchronizing-literal
//!   chunk protocol through a real framer;
//! * the framer gives the same events however the input is split, never
//!   exceeds its limits and never panics;
//! * modified UTF-7 round-trips arbitrary Unicode and its decoder only
//!   accepts canonical input;
//! * generated responses survive encode → [`ResponseReader`] in random
//!   chunks;
//! * [`fuzz_command`] holds its invariants on arbitrary and IMAP-like bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use slotmail_imap_proto::*;

// ---------------------------------------------------------------- strategies

fn chars_where(f: impl Fn(u8) -> bool) -> Vec<char> {
    (0x21u8..0x7f).filter(|&b| f(b)).map(char::from).collect()
}

fn is_atom_char(b: u8) -> bool {
    !b"(){%*\"\\]".contains(&b)
}

fn atom() -> impl Strategy<Value = String> {
    vec(select(chars_where(is_atom_char)), 1..8).prop_map(|v| v.into_iter().collect())
}

fn tag() -> impl Strategy<Value = Tag> {
    vec(select(chars_where(|b| is_atom_char(b) || b == b']')), 1..8).prop_map(|v| {
        let s: String = v.into_iter().filter(|&c| c != '+').collect();
        Tag::new(if s.is_empty() { "t" } else { &s }).unwrap()
    })
}

/// Bytes without NUL (string arguments).
fn text_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(1u8..=255, 0..16),
        "[ -~]{0,16}".prop_map(String::into_bytes),
        Just(b"NIL".to_vec()),
    ]
}

fn no_control_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        vec(any::<char>(), 0..8).prop_map(|v| v.into_iter().filter(|c| !c.is_control()).collect()),
        Just("&".to_owned()),
        Just("inbox".to_owned()),
    ]
}

fn string_no_nul() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace('\0', ""))
}

fn mailbox() -> BoxedStrategy<MailboxName> {
    no_control_string()
        .prop_map(|s| MailboxName::new(&s).unwrap())
        .boxed()
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        no_control_string(),
        Just("*".to_owned()),
        Just("%".to_owned()),
        "[a-z%*/]{1,6}"
    ]
}

const SYSTEM: [&str; 6] = ["ANSWERED", "FLAGGED", "DELETED", "SEEN", "DRAFT", "RECENT"];

fn flag() -> BoxedStrategy<Flag> {
    prop_oneof![
        Just(Flag::Answered),
        Just(Flag::Flagged),
        Just(Flag::Deleted),
        Just(Flag::Seen),
        Just(Flag::Draft),
        Just(Flag::Recent),
        atom().prop_map(Flag::Keyword),
        atom()
            .prop_filter("system flag", |a| !SYSTEM
                .contains(&a.to_ascii_uppercase().as_str()))
            .prop_map(Flag::Extension),
    ]
    .boxed()
}

fn seq_num() -> impl Strategy<Value = SeqNum> {
    prop_oneof![4 => (1u32..=u32::MAX).prop_map(SeqNum::Value), 1 => Just(SeqNum::Star)]
}

/// A set of ranges, as servers send them.
fn seq_set() -> BoxedStrategy<SequenceSet> {
    vec((seq_num(), seq_num()), 1..4)
        .prop_map(|v| {
            SequenceSet::new(
                v.into_iter()
                    .map(|(start, end)| SeqRange { start, end })
                    .collect(),
            )
            .unwrap()
        })
        .boxed()
}

/// A set as a client may write it in a command: ranges or `$` (SEARCHRES).
fn cmd_set() -> BoxedStrategy<SequenceSet> {
    prop_oneof![9 => seq_set(), 1 => Just(SequenceSet::saved_result())].boxed()
}

fn date() -> impl Strategy<Value = Date> {
    (1u16..=9999, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| Date::new(y, m, d).unwrap())
}

fn date_time() -> BoxedStrategy<DateTime> {
    (date(), 0u8..24, 0u8..60, 0u8..=60, -5999i16..=5999)
        .prop_map(|(d, h, mi, s, z)| DateTime::new(d, h, mi, s, z).unwrap())
        .boxed()
}

fn number64() -> impl Strategy<Value = u64> {
    0u64..=i64::MAX as u64
}

fn mod_seq() -> impl Strategy<Value = u64> {
    1u64..=i64::MAX as u64
}

fn status_item() -> impl Strategy<Value = StatusItem> {
    select(StatusItem::ALL.to_vec())
}

fn section() -> BoxedStrategy<Section> {
    let names = vec(string_no_nul(), 1..3);
    (vec(1u32..=u32::MAX, 0..3), 0u8..6, names)
        .prop_map(|(part, t, names)| {
            let text = match t {
                0 => None,
                1 => Some(SectionText::Header),
                2 => Some(SectionText::Text),
                3 if !part.is_empty() => Some(SectionText::Mime),
                3 => None,
                4 => Some(SectionText::HeaderFields(names)),
                _ => Some(SectionText::HeaderFieldsNot(names)),
            };
            Section { part, text }
        })
        .boxed()
}

fn partial() -> impl Strategy<Value = Option<Partial>> {
    proptest::option::of(
        (any::<u32>(), 1u32..=u32::MAX).prop_map(|(offset, length)| Partial { offset, length }),
    )
}

fn fetch_attr() -> BoxedStrategy<FetchAttr> {
    prop_oneof![
        select(vec![
            FetchAttr::Envelope,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822,
            FetchAttr::Rfc822Header,
            FetchAttr::Rfc822Size,
            FetchAttr::Rfc822Text,
            FetchAttr::Body,
            FetchAttr::BodyStructure,
            FetchAttr::Uid,
            FetchAttr::ModSeq,
        ]),
        (any::<bool>(), section(), partial()).prop_map(|(peek, section, partial)| {
            FetchAttr::BodySection {
                peek,
                section,
                partial,
            }
        }),
        (any::<bool>(), vec(1u32..100, 0..3), partial()).prop_map(|(peek, part, partial)| {
            FetchAttr::Binary {
                peek,
                part,
                partial,
            }
        }),
        vec(1u32..100, 0..3).prop_map(|part| FetchAttr::BinarySize { part }),
    ]
    .boxed()
}

fn search_leaf() -> BoxedStrategy<SearchKey> {
    use SearchKey as K;
    prop_oneof![
        select(vec![
            K::All,
            K::Answered,
            K::Deleted,
            K::Draft,
            K::Flagged,
            K::New,
            K::Old,
            K::Recent,
            K::Seen,
            K::Unanswered,
            K::Undeleted,
            K::Undraft,
            K::Unflagged,
            K::Unseen,
        ]),
        prop_oneof![
            text_bytes().prop_map(K::Bcc),
            text_bytes().prop_map(K::Body),
            text_bytes().prop_map(K::Cc),
            text_bytes().prop_map(K::From),
            text_bytes().prop_map(K::Subject),
            text_bytes().prop_map(K::Text),
            text_bytes().prop_map(K::To),
            (text_bytes(), text_bytes()).prop_map(|(a, b)| K::Header(a, b)),
        ],
        prop_oneof![
            date().prop_map(K::Before),
            date().prop_map(K::On),
            date().prop_map(K::SentBefore),
            date().prop_map(K::SentOn),
            date().prop_map(K::SentSince),
            date().prop_map(K::Since),
        ],
        prop_oneof![
            atom().prop_map(K::Keyword),
            atom().prop_map(K::Unkeyword),
            number64().prop_map(K::Larger),
            number64().prop_map(K::Smaller),
            (1u32..=u32::MAX).prop_map(K::Older),
            (1u32..=u32::MAX).prop_map(K::Younger),
            cmd_set().prop_map(K::Uid),
            cmd_set().prop_map(K::SequenceSet),
            (
                proptest::option::of((
                    flag(),
                    select(vec![
                        ModSeqEntryType::Private,
                        ModSeqEntryType::Shared,
                        ModSeqEntryType::All
                    ])
                )),
                number64()
            )
                .prop_map(|(e, mod_seq)| K::ModSeq {
                    entry: e.map(|(flag, entry_type)| ModSeqEntry { flag, entry_type }),
                    mod_seq
                }),
        ],
    ]
    .boxed()
}

fn search_key() -> BoxedStrategy<SearchKey> {
    search_leaf()
        .prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|k| SearchKey::Not(Box::new(k))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| SearchKey::Or(Box::new(a), Box::new(b))),
                vec(inner, 1..3).prop_map(SearchKey::And),
            ]
        })
        .boxed()
}

fn special_use() -> impl Strategy<Value = SpecialUse> {
    prop_oneof![
        select(vec![
            SpecialUse::All,
            SpecialUse::Archive,
            SpecialUse::Drafts,
            SpecialUse::Flagged,
            SpecialUse::Junk,
            SpecialUse::Sent,
            SpecialUse::Trash,
            SpecialUse::Important,
        ]),
        "X[A-Za-z]{0,6}".prop_map(SpecialUse::Extension),
    ]
}

fn select_params() -> BoxedStrategy<SelectParams> {
    let qresync = (
        1u32..=u32::MAX,
        mod_seq(),
        proptest::option::of(cmd_set()),
        proptest::option::of((cmd_set(), cmd_set())),
    )
        .prop_map(
            |(uid_validity, mod_seq, known_uids, seq_match)| QResyncParams {
                uid_validity,
                mod_seq,
                known_uids,
                seq_match,
            },
        );
    (any::<bool>(), proptest::option::of(qresync))
        .prop_map(|(condstore, qresync)| SelectParams { condstore, qresync })
        .boxed()
}

fn list_command() -> BoxedStrategy<ListCommand> {
    let sel = vec(
        select(vec![
            ListSelectOption::Subscribed,
            ListSelectOption::Remote,
            ListSelectOption::RecursiveMatch,
            ListSelectOption::SpecialUse,
        ]),
        0..3,
    )
    .prop_map(|mut v| {
        if v.contains(&ListSelectOption::RecursiveMatch)
            && !v.iter().any(|o| {
                matches!(
                    o,
                    ListSelectOption::Subscribed | ListSelectOption::SpecialUse
                )
            })
        {
            v.push(ListSelectOption::Subscribed);
        }
        v
    });
    let ret = vec(
        prop_oneof![
            Just(ListReturnOption::Subscribed),
            Just(ListReturnOption::Children),
            Just(ListReturnOption::SpecialUse),
            vec(status_item(), 1..3).prop_map(ListReturnOption::Status),
        ],
        0..3,
    );
    (sel, no_control_string(), vec(pattern(), 1..3), ret)
        .prop_map(
            |(selection, reference, patterns, return_opts)| ListCommand {
                selection,
                reference,
                patterns,
                return_opts,
            },
        )
        .boxed()
}

fn append_message() -> BoxedStrategy<AppendMessage> {
    (
        vec(flag(), 0..3),
        proptest::option::of(date_time()),
        vec(any::<u8>(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(flags, date, data, binary)| AppendMessage {
            flags,
            date,
            data,
            binary,
        })
        .boxed()
}

fn base64ish() -> impl Strategy<Value = String> {
    prop_oneof![Just("=".to_owned()), "[A-Za-z0-9+/]{1,12}={0,2}"]
}

fn command_body() -> impl Strategy<Value = CommandBody> {
    use CommandBody as B;
    let simple = select(vec![
        B::Capability,
        B::Noop,
        B::Logout,
        B::StartTls,
        B::Namespace,
        B::Idle,
        B::Check,
        B::Close,
        B::Unselect,
        B::Expunge,
    ]);
    let session = prop_oneof![
        ("[A-Z0-9-]{1,12}", proptest::option::of(base64ish())).prop_map(
            |(mechanism, initial_response)| B::Authenticate {
                mechanism,
                initial_response
            }
        ),
        (text_bytes(), text_bytes())
            .prop_map(|(username, password)| B::Login { username, password }),
        vec(atom(), 1..3).prop_map(|capabilities| B::Enable { capabilities }),
        proptest::option::of(vec(
            (text_bytes(), proptest::option::of(text_bytes())),
            0..3
        ))
        .prop_map(|params| B::Id { params }),
        "[A-Z0-9]{1,8}".prop_map(|mechanism| B::Compress { mechanism }),
        string_no_nul().prop_map(|root| B::GetQuota { root }),
    ];
    let mailboxes = prop_oneof![
        (mailbox(), select_params()).prop_map(|(mailbox, params)| B::Select { mailbox, params }),
        (mailbox(), select_params()).prop_map(|(mailbox, params)| B::Examine { mailbox, params }),
        (mailbox(), vec(special_use(), 0..3)).prop_map(|(mailbox, special_use)| B::Create {
            mailbox,
            special_use
        }),
        mailbox().prop_map(|mailbox| B::Delete { mailbox }),
        (mailbox(), mailbox()).prop_map(|(from, to)| B::Rename { from, to }),
        mailbox().prop_map(|mailbox| B::Subscribe { mailbox }),
        mailbox().prop_map(|mailbox| B::Unsubscribe { mailbox }),
        mailbox().prop_map(|mailbox| B::GetQuotaRoot { mailbox }),
        list_command().prop_map(B::List),
        (no_control_string(), pattern())
            .prop_map(|(reference, pattern)| B::Lsub { reference, pattern }),
    ];
    let messages = prop_oneof![
        (mailbox(), vec(status_item(), 1..4))
            .prop_map(|(mailbox, items)| B::Status { mailbox, items }),
        (mailbox(), vec(append_message(), 1..3))
            .prop_map(|(mailbox, messages)| B::Append { mailbox, messages }),
        cmd_set().prop_map(|uids| B::UidExpunge { uids }),
        (
            any::<bool>(),
            proptest::option::of("[A-Za-z0-9-]{1,10}"),
            vec(search_key(), 1..3),
            proptest::option::of(vec(
                select(vec![
                    SearchReturnOpt::Min,
                    SearchReturnOpt::Max,
                    SearchReturnOpt::All,
                    SearchReturnOpt::Count,
                    SearchReturnOpt::Save
                ]),
                0..4
            ))
        )
            .prop_map(|(uid, charset, criteria, return_opts)| B::Search {
                uid,
                charset,
                criteria,
                return_opts
            }),
        (
            any::<bool>(),
            cmd_set(),
            prop_oneof![
                Just(FetchAttrs::All),
                Just(FetchAttrs::Fast),
                Just(FetchAttrs::Full),
                vec(fetch_attr(), 1..4).prop_map(FetchAttrs::List),
            ],
            proptest::option::of(mod_seq()),
            any::<bool>()
        )
            .prop_map(|(uid, set, attrs, changed_since, v)| B::Fetch {
                uid,
                set,
                attrs,
                modifiers: FetchModifiers {
                    changed_since,
                    vanished: v && uid && changed_since.is_some()
                }
            }),
        (
            any::<bool>(),
            cmd_set(),
            proptest::option::of(number64()),
            select(vec![StoreMode::Replace, StoreMode::Add, StoreMode::Remove]),
            any::<bool>(),
            vec(flag(), 0..4)
        )
            .prop_map(
                |(uid, set, unchanged_since, mode, silent, flags)| B::Store {
                    uid,
                    set,
                    unchanged_since,
                    mode,
                    silent,
                    flags
                }
            ),
        (any::<bool>(), cmd_set(), mailbox()).prop_map(|(uid, set, mailbox)| B::Copy {
            uid,
            set,
            mailbox
        }),
        (any::<bool>(), cmd_set(), mailbox()).prop_map(|(uid, set, mailbox)| B::Move {
            uid,
            set,
            mailbox
        }),
    ];
    prop_oneof![1 => simple.boxed(), 2 => session.boxed(), 3 => mailboxes.boxed(), 4 => messages.boxed()]
}

fn command() -> BoxedStrategy<Command> {
    (tag(), command_body())
        .prop_map(|(tag, body)| Command { tag, body })
        .boxed()
}

fn value() -> BoxedStrategy<Value> {
    let atom_chars = chars_where(|b| !b"()\"{".contains(&b));
    let value_atom = (
        select(chars_where(|b| b.is_ascii_alphabetic() || b == b'\\')),
        vec(select(atom_chars), 0..6),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect::<String>())
        .prop_filter("NIL", |s| !s.eq_ignore_ascii_case("NIL"));
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<u64>().prop_map(Value::Number),
        value_atom.prop_map(Value::Atom),
        vec(any::<u8>(), 0..20).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| vec(inner, 0..4).prop_map(Value::List))
        .boxed()
}

fn response_code() -> BoxedStrategy<ResponseCode> {
    use ResponseCode as C;
    prop_oneof![
        select(vec![
            C::Alert,
            C::Parse,
            C::ReadOnly,
            C::ReadWrite,
            C::TryCreate,
            C::UidNotSticky,
            C::NoModSeq,
            C::Closed,
            C::Unavailable,
            C::AuthenticationFailed,
            C::AuthorizationFailed,
            C::Expired,
            C::PrivacyRequired,
            C::ContactAdmin,
            C::NoPerm,
            C::InUse,
            C::ExpungeIssued,
            C::Corruption,
            C::ServerBug,
            C::ClientBug,
            C::Cannot,
            C::Limit,
            C::OverQuota,
            C::AlreadyExists,
            C::NonExistent,
            C::TooBig,
            C::CompressionActive,
            C::UseAttr,
            C::HasChildren,
        ]),
        (vec(flag(), 0..3), any::<bool>()).prop_map(|(flags, allow_new_keywords)| {
            C::PermanentFlags {
                flags,
                allow_new_keywords,
            }
        }),
        (1u32..=u32::MAX).prop_map(C::UidNext),
        (1u32..=u32::MAX).prop_map(C::UidValidity),
        (1u32..=u32::MAX).prop_map(C::Unseen),
        (1u32..=u32::MAX, seq_set())
            .prop_map(|(uid_validity, uids)| C::AppendUid { uid_validity, uids }),
        (1u32..=u32::MAX, seq_set(), seq_set()).prop_map(|(uid_validity, source, dest)| {
            C::CopyUid {
                uid_validity,
                source,
                dest,
            }
        }),
        mod_seq().prop_map(C::HighestModSeq),
        seq_set().prop_map(C::Modified),
        vec(atom(), 0..3).prop_map(C::Capability),
        vec("[A-Za-z0-9-]{1,8}", 0..3).prop_map(C::BadCharset),
        ("X-[A-Z]{1,6}", proptest::option::of("[a-zA-Z0-9 ]{0,10}"))
            .prop_map(|(name, args)| C::Other { name, args }),
    ]
    .boxed()
}

fn fetch_item() -> BoxedStrategy<FetchItem> {
    use FetchItem as F;
    let data = proptest::option::of(vec(any::<u8>(), 0..30));
    prop_oneof![
        (1u32..=u32::MAX).prop_map(F::Uid),
        vec(flag(), 0..3).prop_map(F::Flags),
        date_time().prop_map(F::InternalDate),
        number64().prop_map(F::Rfc822Size),
        mod_seq().prop_map(F::ModSeq),
        (section(), proptest::option::of(any::<u32>()), data.clone()).prop_map(
            |(section, origin, data)| F::BodySection {
                section,
                origin,
                data
            }
        ),
        (
            vec(1u32..50, 0..3),
            proptest::option::of(any::<u32>()),
            data.clone()
        )
            .prop_map(|(part, origin, data)| F::Binary { part, origin, data }),
        (vec(1u32..50, 0..3), number64()).prop_map(|(part, size)| F::BinarySize { part, size }),
        data.clone().prop_map(F::Rfc822),
        data.clone().prop_map(F::Rfc822Header),
        data.prop_map(F::Rfc822Text),
        value().prop_map(F::Envelope),
        value().prop_map(F::BodyStructure),
        value().prop_map(F::Body),
    ]
    .boxed()
}

fn mailbox_attr() -> impl Strategy<Value = MailboxAttr> {
    prop_oneof![
        select(vec![
            MailboxAttr::NoInferiors,
            MailboxAttr::NoSelect,
            MailboxAttr::NonExistent,
            MailboxAttr::Subscribed,
            MailboxAttr::Remote,
            MailboxAttr::HasChildren,
            MailboxAttr::HasNoChildren,
            MailboxAttr::Marked,
            MailboxAttr::Unmarked,
            MailboxAttr::All,
            MailboxAttr::Archive,
            MailboxAttr::Drafts,
            MailboxAttr::Flagged,
            MailboxAttr::Junk,
            MailboxAttr::Sent,
            MailboxAttr::Trash,
            MailboxAttr::Important,
        ]),
        "X[A-Za-z]{0,6}".prop_map(MailboxAttr::Extension),
    ]
}

fn delimiter() -> impl Strategy<Value = Option<char>> {
    proptest::option::of(prop_oneof![
        Just('/'),
        Just('.'),
        Just('"'),
        Just('\\'),
        any::<char>().prop_filter("ctl", |c| !c.is_control() && *c != '\0')
    ])
}

fn list_data() -> BoxedStrategy<ListData> {
    (
        vec(mailbox_attr(), 0..3),
        delimiter(),
        mailbox(),
        vec((string_no_nul(), value()), 0..2),
    )
        .prop_map(|(attributes, delimiter, mailbox, extended)| ListData {
            attributes,
            delimiter,
            mailbox,
            extended,
        })
        .boxed()
}

fn data() -> BoxedStrategy<Data> {
    let ns = || {
        vec(
            (no_control_string(), delimiter())
                .prop_map(|(prefix, delimiter)| NamespaceDescr { prefix, delimiter }),
            0..2,
        )
    };
    prop_oneof![
        prop_oneof![
            vec(atom(), 0..3).prop_map(Data::Capability),
            vec(atom(), 0..3).prop_map(Data::Enabled),
            list_data().prop_map(Data::List),
            list_data().prop_map(Data::Lsub),
            (mailbox(), vec((status_item(), number64()), 0..4))
                .prop_map(|(mailbox, items)| Data::Status { mailbox, items }),
            (vec(1u32..=u32::MAX, 0..5), proptest::option::of(mod_seq()))
                .prop_map(|(ids, mod_seq)| Data::Search { ids, mod_seq }),
            (
                proptest::option::of("[ -~]{0,8}"),
                any::<bool>(),
                proptest::option::of(1u32..=u32::MAX),
                proptest::option::of(1u32..=u32::MAX),
                proptest::option::of(seq_set()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(mod_seq())
            )
                .prop_map(|(tag, uid, min, max, all, count, mod_seq)| Data::ESearch {
                    tag,
                    uid,
                    min,
                    max,
                    all,
                    count,
                    mod_seq
                }),
        ],
        prop_oneof![
            vec(flag(), 0..4).prop_map(Data::Flags),
            any::<u32>().prop_map(Data::Exists),
            any::<u32>().prop_map(Data::Recent),
            any::<u32>().prop_map(Data::Expunge),
            (any::<u32>(), vec(fetch_item(), 0..4))
                .prop_map(|(seq, items)| Data::Fetch { seq, items }),
            (any::<bool>(), seq_set()).prop_map(|(earlier, uids)| Data::Vanished { earlier, uids }),
            (ns(), ns(), ns()).prop_map(|(personal, other, shared)| Data::Namespace {
                personal,
                other,
                shared
            }),
            (
                string_no_nul(),
                vec(
                    (atom(), number64(), number64())
                        .prop_map(|(name, usage, limit)| QuotaResource { name, usage, limit }),
                    0..3
                )
            )
                .prop_map(|(root, resources)| Data::Quota { root, resources }),
            (mailbox(), vec(string_no_nul(), 0..3))
                .prop_map(|(mailbox, roots)| Data::QuotaRoot { mailbox, roots }),
            proptest::option::of(vec(
                (text_bytes(), proptest::option::of(text_bytes())),
                0..3
            ))
            .prop_map(Data::Id),
        ],
    ]
    .boxed()
}

fn response() -> BoxedStrategy<Response> {
    let text = "[ -~]{0,20}";
    let tagged = (
        tag(),
        select(vec![StatusKind::Ok, StatusKind::No, StatusKind::Bad]),
        proptest::option::of(response_code()),
        text,
    )
        .prop_map(|(t, kind, code, text)| (Some(t), kind, code, text));
    let untagged = (
        select(vec![
            StatusKind::Ok,
            StatusKind::No,
            StatusKind::Bad,
            StatusKind::PreAuth,
            StatusKind::Bye,
        ]),
        proptest::option::of(response_code()),
        text,
    )
        .prop_map(|(kind, code, text)| (None, kind, code, text));
    prop_oneof![
        prop_oneof![tagged, untagged].prop_map(|(tag, kind, code, mut text)| {
            if code.is_none() && text.starts_with('[') {
                text.remove(0);
            }
            Response::Status {
                tag,
                kind,
                code,
                text,
            }
        }),
        text.prop_map(|text| Response::Continuation { text }),
        data().prop_map(Response::Data),
    ]
    .boxed()
}

// ------------------------------------------------------------------ helpers

/// Splits `input` at the given cut points.
fn split_at_points(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(input[last..p].to_vec());
        last = p;
    }
    out.push(input[last..].to_vec());
    out
}

fn framer_limits() -> Limits {
    Limits {
        max_line_bytes: 120,
        max_command_bytes: 300,
        max_literal_bytes: 200,
        max_non_sync_literal_bytes: 100,
        max_command_literal_bytes: 300,
        max_literals_per_command: 4,
        max_discard_bytes: 600,
        max_pending_input_bytes: 1 << 20,
        max_tag_bytes: 16,
        max_nesting_depth: 8,
    }
}

/// Feeds the pieces, draining after each, with a deterministic policy for
/// literal decisions and raw lines; checks limits on every event.
fn run_framer(pieces: &[Vec<u8>], policy: u8) -> Vec<FramerEvent> {
    let limits = framer_limits();
    let mut f = Framer::new(limits.clone());
    let mut events = Vec::new();
    let mut sync_count = 0u32;
    for piece in pieces {
        f.feed(piece).unwrap();
        while let Some(ev) = f.next_event() {
            match &ev {
                FramerEvent::LiteralAnnounced { size, sync, .. } => {
                    assert!(*size <= limits.max_literal_bytes);
                    if *sync {
                        sync_count += 1;
                        if policy & (1 << (sync_count % 8)) != 0 {
                            assert!(f.reject_literal());
                        } else {
                            assert!(f.accept_literal());
                        }
                    } else {
                        assert!(*size <= limits.max_non_sync_literal_bytes);
                    }
                }
                FramerEvent::Command(frame) => {
                    assert!(
                        frame
                            .lines()
                            .iter()
                            .all(|l| l.len() <= limits.max_line_bytes)
                    );
                    assert!(
                        frame.lines().iter().map(Vec::len).sum::<usize>()
                            <= limits.max_command_bytes
                    );
                    assert!(frame.literals().len() <= limits.max_literals_per_command);
                    assert!(
                        frame
                            .literals()
                            .iter()
                            .map(|l| l.data.len() as u64)
                            .sum::<u64>()
                            <= limits.max_command_literal_bytes
                    );
                    if let Ok(Command {
                        body: CommandBody::Idle | CommandBody::Authenticate { .. },
                        ..
                    }) = parse_command(frame)
                    {
                        assert!(f.expect_raw_line());
                    }
                }
                FramerEvent::RawLine(l) => assert!(l.len() <= limits.max_line_bytes),
                FramerEvent::Error(e) => assert_eq!(e.is_fatal(), f.is_closed()),
            }
            events.push(ev);
        }
    }
    events
}

fn imap_like_input() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        vec(any::<u8>(), 0..24),
        command().prop_map(|c| {
            let mut out = Vec::new();
            c.encode(&mut out);
            out
        }),
        command().prop_map(|c| {
            c.encode_with(&EncodeOptions {
                literal_mode: LiteralMode::Sync,
                ..Default::default()
            })
            .concat()
        }),
        select(vec![
            b"{5}\r\n".to_vec(),
            b"{3+}\r\n".to_vec(),
            b"~{2}\r\n".to_vec(),
            b"{150+}\r\n".to_vec(),
            b"{9999}\r\n".to_vec(),
            b"{99999999+}\r\n".to_vec(),
            b"\r\n".to_vec(),
            b"\n".to_vec(),
            b"a IDLE\r\n".to_vec(),
            b"DONE\r\n".to_vec(),
            b"x AUTHENTICATE PLAIN\r\n".to_vec(),
            b"t APPEND INBOX {4}\r\n".to_vec(),
        ]),
        (0usize..400).prop_map(|n| vec![b'x'; n]),
    ];
    vec(fragment, 0..12).prop_map(|v| v.concat())
}

// --------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn command_encode_parse_roundtrip(cmd in command()) {
        for literal_mode in [LiteralMode::NonSync, LiteralMode::Sync, LiteralMode::LiteralMinus] {
            for encoding in [MailboxEncoding::ModifiedUtf7, MailboxEncoding::Utf8] {
                let bytes = cmd.encode_with(&EncodeOptions { literal_mode, encoding }).concat();
                let opts = ParseOptions { encoding, ..ParseOptions::default() };
                let parsed = parse_command_bytes_with(&bytes, &opts);
                prop_assert_eq!(
                    parsed.as_ref(),
                    Ok(&cmd),
                    "wire {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        let mut out = Vec::new();
        cmd.encode(&mut out);
        prop_assert_eq!(parse_command_bytes(&out), Ok(cmd));
    }

    #[test]
    fn sync_literal_chunks_follow_the_continuation_protocol(cmd in command()) {
        let enc = cmd.encode_with(&EncodeOptions { literal_mode: LiteralMode::Sync, ..Default::default() });
        let mut f = Framer::new(Limits::default());
        let last = enc.chunks.len() - 1;
        for (i, chunk) in enc.chunks.iter().enumerate() {
            f.feed(chunk).unwrap();
            let mut events = Vec::new();
            while let Some(ev) = f.next_event() {
                events.push(ev);
            }
            if i < last {
                // The client must now wait for "+": the framer asks the server.
                let announced = matches!(events.last(), Some(FramerEvent::LiteralAnnounced { sync: true, .. }));
                prop_assert!(announced);
                prop_assert!(f.awaiting_decision());
                prop_assert!(f.accept_literal());
            } else {
                let Some(FramerEvent::Command(frame)) = events.last() else {
                    return Err(TestCaseError::fail(format!("no command: {events:?}")));
                };
                prop_assert_eq!(parse_command(frame), Ok(cmd.clone()));
            }
        }
    }

    #[test]
    fn framer_split_independent(input in imap_like_input(), cuts in vec(any::<usize>(), 0..8), policy in any::<u8>()) {
        let whole = run_framer(std::slice::from_ref(&input), policy);
        let bytewise: Vec<Vec<u8>> = input.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(&run_framer(&bytewise, policy), &whole);
        prop_assert_eq!(&run_framer(&split_at_points(&input, &cuts), policy), &whole);
    }

    #[test]
    fn framer_never_panics_on_random_bytes(input in vec(any::<u8>(), 0..600), policy in any::<u8>()) {
        let whole = run_framer(std::slice::from_ref(&input), policy);
        let bytewise: Vec<Vec<u8>> = input.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(run_framer(&bytewise, policy), whole);
    }

    #[test]
    fn mutf7_roundtrip(s in any::<String>()) {
        let e = mutf7::encode(&s);
        prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        prop_assert_eq!(mutf7::decode(&e), Ok(s));
    }

    #[test]
    fn mutf7_decoder_accepts_only_canonical(s in "[ -~]{0,16}", b64 in "&[A-Za-z0-9+,]{0,8}-") {
        for candidate in [s.clone(), format!("{s}{b64}"), format!("{b64}{s}")] {
            if let Ok(d) = mutf7::decode(&candidate) {
                prop_assert_eq!(mutf7::encode(&d), candidate);
            }
        }
    }

    #[test]
    fn response_roundtrip(resp in response(), cuts in vec(any::<usize>(), 0..6), utf8 in any::<bool>()) {
        let enc = if utf8 { MailboxEncoding::Utf8 } else { MailboxEncoding::ModifiedUtf7 };
        let mut wire = Vec::new();
        resp.encode_with(&mut wire, enc);
        let mut r = ResponseReader::new(ResponseLimits::default());
        r.set_encoding(enc);
        let mut got = Vec::new();
        for piece in split_at_points(&wire, &cuts) {
            r.feed(&piece).unwrap();
            while let Some(x) = r.next_response() {
                got.push(x);
            }
        }
        prop_assert_eq!(got, vec![Ok(resp)], "wire {:?}", String::from_utf8_lossy(&wire));
        prop_assert!(!r.in_response());
    }

    #[test]
    fn fuzz_entry_point_on_random_bytes(data in vec(any::<u8>(), 0..800)) {
        fuzz_command(&data);
    }

    #[test]
    fn fuzz_entry_point_on_imap_like_bytes(ctl in any::<u8>(), input in imap_like_input()) {
        let mut data = vec![ctl];
        data.extend_from_slice(&input);
        fuzz_command(&data);
    }

    #[test]
    fn fuzz_entry_point_on_mutated_commands(
        ctl in any::<u8>(),
        cmds in vec(command(), 1..4),
        edits in vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
    ) {
        // Valid commands, then bytes flipped, inserted and deleted: the
        // framer and parser meet near-misses of every grammar rule.
        let mut data = Vec::new();
        for c in &cmds {
            c.encode(&mut data);
        }
        for (at, op, byte) in edits {
            let i = at.index(data.len());
            match op {
                0 => data[i] ^= byte.max(1),
                1 => data.insert(i, byte),
                _ => {
                    data.remove(i);
                }
            }
        }
        data.insert(0, ctl);
        fuzz_command(&data);
    }

    #[test]
    fn fuzz_entry_point_on_encoded_responses(ctl in any::<u8>(), resps in vec(response(), 0..4)) {
        let mut data = vec![ctl];
        for r in &resps {
            r.encode(&mut data);
        }
        fuzz_command(&data);
    }
}
