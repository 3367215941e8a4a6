//! Writing commands to wire bytes, and the string-form choices shared with
//! the response encoder.
//!
//! [`Command::encode`] produces bytes that [`crate::parse_command`] accepts
//! and parses back to the same command. Strings become atoms, quoted strings
//! or literals automatically; literals are non-synchronizing (`{n+}`) by
//! default, or synchronizing with [`Command::encode_with`], which then splits
//! the output into chunks to be sent after each `+` continuation.

use crate::command::*;
use crate::mutf7;
use crate::syntax::{
    is_astring_char, is_list_char, is_quotable, is_quotable_utf8, push_num, push_quoted,
};
use crate::types::{Flag, MailboxEncoding};

/// Literal size up to which LITERAL- allows `{n+}`, in bytes (RFC 7888 §5).
pub const LITERAL_MINUS_MAX_BYTES: usize = 4096;

/// Which literal form the command encoder uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LiteralMode {
    /// `{n}`: wait for `+` before each literal.
    Sync,
    /// `{n+}` (LITERAL+).
    #[default]
    NonSync,
    /// `{n+}` up to 4096 bytes, `{n}` above (LITERAL-).
    LiteralMinus,
}

/// Command encoder settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Literal form.
    pub literal_mode: LiteralMode,
    /// Mailbox-name encoding.
    pub encoding: MailboxEncoding,
}

/// An encoded command split at synchronizing literals: send `chunks[0]`,
/// then for each further chunk wait for a `+` continuation first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedCommand {
    /// The chunks; their concatenation is the whole command.
    pub chunks: Vec<Vec<u8>>,
}

impl EncodedCommand {
    /// All chunks joined.
    pub fn concat(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// Somewhere strings, literals and raw bytes are written.
pub(crate) trait Sink {
    fn raw(&mut self, b: &[u8]);
    fn literal(&mut self, data: &[u8], binary: bool);
}

/// Responses: `{n}` literals written inline.
impl Sink for Vec<u8> {
    fn raw(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn literal(&mut self, data: &[u8], binary: bool) {
        if binary {
            self.push(b'~');
        }
        self.push(b'{');
        push_num(self, data.len() as u64);
        self.extend_from_slice(b"}\r\n");
        self.extend_from_slice(data);
    }
}

/// Commands: literal form per [`LiteralMode`], chunked at sync literals.
struct CmdSink {
    chunks: Vec<Vec<u8>>,
    cur: Vec<u8>,
    mode: LiteralMode,
}

impl Sink for CmdSink {
    fn raw(&mut self, b: &[u8]) {
        self.cur.extend_from_slice(b);
    }
    fn literal(&mut self, data: &[u8], binary: bool) {
        let sync = match self.mode {
            LiteralMode::Sync => true,
            LiteralMode::NonSync => false,
            LiteralMode::LiteralMinus => data.len() > LITERAL_MINUS_MAX_BYTES,
        };
        if binary {
            self.cur.push(b'~');
        }
        self.cur.push(b'{');
        push_num(&mut self.cur, data.len() as u64);
        if !sync {
            self.cur.push(b'+');
        }
        self.cur.extend_from_slice(b"}\r\n");
        if sync {
            self.chunks.push(std::mem::take(&mut self.cur));
        }
        self.cur.extend_from_slice(data);
    }
}

pub(crate) fn num<S: Sink>(s: &mut S, n: u64) {
    s.raw(n.to_string().as_bytes());
}

/// `string`: quoted when 7-bit text, literal otherwise.
pub(crate) fn string<S: Sink>(s: &mut S, b: &[u8]) {
    if is_quotable(b) {
        let mut q = Vec::with_capacity(b.len() + 2);
        push_quoted(&mut q, b);
        s.raw(&q);
    } else {
        s.literal(b, false);
    }
}

/// `astring`: atom when possible.
pub(crate) fn astring<S: Sink>(s: &mut S, b: &[u8]) {
    if !b.is_empty() && b.iter().all(|&c| is_astring_char(c)) {
        s.raw(b);
    } else {
        string(s, b);
    }
}

/// `nstring`.
pub(crate) fn nstring<S: Sink>(s: &mut S, b: Option<&[u8]>) {
    match b {
        None => s.raw(b"NIL"),
        Some(b) => string(s, b),
    }
}

/// Wire form of a mailbox-like name.
pub(crate) fn encode_name(name: &str, encoding: MailboxEncoding) -> Vec<u8> {
    match encoding {
        MailboxEncoding::ModifiedUtf7 => mutf7::encode(name).into_bytes(),
        MailboxEncoding::Utf8 => name.as_bytes().to_vec(),
    }
}

/// A mailbox name as a string (quoted or literal), never an atom, for
/// responses.
pub(crate) fn mailbox_string<S: Sink>(s: &mut S, name: &str, encoding: MailboxEncoding) {
    let w = encode_name(name, encoding);
    if encoding == MailboxEncoding::Utf8 && is_quotable_utf8(&w) {
        let mut q = Vec::new();
        push_quoted(&mut q, &w);
        s.raw(&q);
    } else {
        string(s, &w);
    }
}

/// A mailbox name as an astring, for commands.
fn mailbox_astring<S: Sink>(s: &mut S, name: &str, encoding: MailboxEncoding) {
    let w = encode_name(name, encoding);
    if !w.is_empty() && w.iter().all(|&c| is_astring_char(c)) {
        s.raw(&w);
    } else {
        mailbox_string(s, name, encoding);
    }
}

/// A `list-mailbox` pattern.
fn list_mailbox<S: Sink>(s: &mut S, pattern: &str, encoding: MailboxEncoding) {
    let w = encode_name(pattern, encoding);
    if !w.is_empty() && w.iter().all(|&c| is_list_char(c)) {
        s.raw(&w);
    } else {
        mailbox_string(s, pattern, encoding);
    }
}

pub(crate) fn flag_list<S: Sink>(s: &mut S, flags: &[Flag]) {
    let mut b = vec![b'('];
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            b.push(b' ');
        }
        f.write(&mut b);
    }
    b.push(b')');
    s.raw(&b);
}

fn part_path(b: &mut Vec<u8>, part: &[u32]) {
    for (i, p) in part.iter().enumerate() {
        if i > 0 {
            b.push(b'.');
        }
        push_num(b, u64::from(*p));
    }
}

/// `[section]`.
pub(crate) fn section<S: Sink>(s: &mut S, sec: &Section) {
    let mut b = vec![b'['];
    part_path(&mut b, &sec.part);
    if let Some(t) = &sec.text {
        if !sec.part.is_empty() {
            b.push(b'.');
        }
        let (kw, names): (&[u8], Option<&Vec<String>>) = match t {
            SectionText::Header => (b"HEADER", None),
            SectionText::Text => (b"TEXT", None),
            SectionText::Mime => (b"MIME", None),
            SectionText::HeaderFields(n) => (b"HEADER.FIELDS", Some(n)),
            SectionText::HeaderFieldsNot(n) => (b"HEADER.FIELDS.NOT", Some(n)),
        };
        b.extend_from_slice(kw);
        if let Some(names) = names {
            b.extend_from_slice(b" (");
            s.raw(&b);
            b.clear();
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    s.raw(b" ");
                }
                astring(s, n.as_bytes());
            }
            b.push(b')');
        }
    }
    b.push(b']');
    s.raw(&b);
}

/// `[part]` of BINARY.
pub(crate) fn binary_section<S: Sink>(s: &mut S, part: &[u32]) {
    let mut b = vec![b'['];
    part_path(&mut b, part);
    b.push(b']');
    s.raw(&b);
}

fn partial<S: Sink>(s: &mut S, p: &Option<Partial>) {
    if let Some(p) = p {
        s.raw(format!("<{}.{}>", p.offset, p.length).as_bytes());
    }
}

fn status_items<S: Sink>(s: &mut S, items: &[crate::types::StatusItem]) {
    let names: Vec<&str> = items.iter().map(|i| i.as_str()).collect();
    s.raw(format!("({})", names.join(" ")).as_bytes());
}

impl Command {
    /// Appends the wire form (CRLF-terminated) using non-synchronizing
    /// literals and modified UTF-7 mailbox names.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for chunk in self.encode_with(&EncodeOptions::default()).chunks {
            out.extend_from_slice(&chunk);
        }
    }

    /// Encodes with explicit options; see [`EncodedCommand`] for how to send
    /// the chunks.
    pub fn encode_with(&self, opts: &EncodeOptions) -> EncodedCommand {
        let mut s = CmdSink {
            chunks: Vec::new(),
            cur: Vec::new(),
            mode: opts.literal_mode,
        };
        s.raw(self.tag.as_str().as_bytes());
        s.raw(b" ");
        encode_body(&mut s, &self.body, opts.encoding);
        s.raw(b"\r\n");
        let mut chunks = s.chunks;
        chunks.push(s.cur);
        EncodedCommand { chunks }
    }
}

fn encode_body(s: &mut CmdSink, body: &CommandBody, enc: MailboxEncoding) {
    use CommandBody as B;
    let name = body.name();
    s.raw(name.as_bytes());
    match body {
        B::Capability
        | B::Noop
        | B::Logout
        | B::StartTls
        | B::Namespace
        | B::Idle
        | B::Check
        | B::Close
        | B::Unselect
        | B::Expunge => {}
        B::Authenticate {
            mechanism,
            initial_response,
        } => {
            s.raw(b" ");
            s.raw(mechanism.as_bytes());
            if let Some(ir) = initial_response {
                s.raw(b" ");
                s.raw(ir.as_bytes());
            }
        }
        B::Login { username, password } => {
            s.raw(b" ");
            astring(s, username);
            s.raw(b" ");
            astring(s, password);
        }
        B::Enable { capabilities } => {
            for c in capabilities {
                s.raw(b" ");
                s.raw(c.as_bytes());
            }
        }
        B::Select { mailbox, params } | B::Examine { mailbox, params } => {
            s.raw(b" ");
            mailbox_astring(s, mailbox.as_str(), enc);
            select_params(s, params);
        }
        B::Create {
            mailbox,
            special_use,
        } => {
            s.raw(b" ");
            mailbox_astring(s, mailbox.as_str(), enc);
            if !special_use.is_empty() {
                let attrs: Vec<String> = special_use.iter().map(|u| u.as_wire()).collect();
                s.raw(format!(" (USE ({}))", attrs.join(" ")).as_bytes());
            }
        }
        B::Delete { mailbox }
        | B::Subscribe { mailbox }
        | B::Unsubscribe { mailbox }
        | B::GetQuotaRoot { mailbox } => {
            s.raw(b" ");
            mailbox_astring(s, mailbox.as_str(), enc);
        }
        B::Rename { from, to } => {
            s.raw(b" ");
            mailbox_astring(s, from.as_str(), enc);
            s.raw(b" ");
            mailbox_astring(s, to.as_str(), enc);
        }
        B::List(l) => list(s, l, enc),
        B::Lsub { reference, pattern } => {
            s.raw(b" ");
            mailbox_astring(s, reference, enc);
            s.raw(b" ");
            list_mailbox(s, pattern, enc);
        }
        B::Status { mailbox, items } => {
            s.raw(b" ");
            mailbox_astring(s, mailbox.as_str(), enc);
            s.raw(b" ");
            status_items(s, items);
        }
        B::Append { mailbox, messages } => {
            s.raw(b" ");
            mailbox_astring(s, mailbox.as_str(), enc);
            for m in messages {
                s.raw(b" ");
                if !m.flags.is_empty() {
                    flag_list(s, &m.flags);
                    s.raw(b" ");
                }
                if let Some(d) = &m.date {
                    let mut b = Vec::new();
                    d.write(&mut b);
                    b.push(b' ');
                    s.raw(&b);
                }
                s.literal(&m.data, m.binary);
            }
        }
        B::UidExpunge { uids } => {
            s.raw(b" ");
            s.raw(uids.to_string().as_bytes());
        }
        B::Search {
            charset,
            criteria,
            return_opts,
            ..
        } => {
            if let Some(opts) = return_opts {
                let names: Vec<&str> = opts
                    .iter()
                    .map(|o| match o {
                        SearchReturnOpt::Min => "MIN",
                        SearchReturnOpt::Max => "MAX",
                        SearchReturnOpt::All => "ALL",
                        SearchReturnOpt::Count => "COUNT",
                        SearchReturnOpt::Save => "SAVE",
                    })
                    .collect();
                s.raw(format!(" RETURN ({})", names.join(" ")).as_bytes());
            }
            if let Some(cs) = charset {
                s.raw(b" CHARSET ");
                astring(s, cs.as_bytes());
            }
            for k in criteria {
                s.raw(b" ");
                search_key(s, k);
            }
        }
        B::Fetch {
            set,
            attrs,
            modifiers,
            ..
        } => {
            s.raw(b" ");
            s.raw(set.to_string().as_bytes());
            s.raw(b" ");
            match attrs {
                FetchAttrs::All => s.raw(b"ALL"),
                FetchAttrs::Fast => s.raw(b"FAST"),
                FetchAttrs::Full => s.raw(b"FULL"),
                FetchAttrs::List(v) => {
                    s.raw(b"(");
                    for (i, a) in v.iter().enumerate() {
                        if i > 0 {
                            s.raw(b" ");
                        }
                        fetch_attr(s, a);
                    }
                    s.raw(b")");
                }
            }
            let mut mods = Vec::new();
            if let Some(cs) = modifiers.changed_since {
                mods.push(format!("CHANGEDSINCE {cs}"));
            }
            if modifiers.vanished {
                mods.push("VANISHED".into());
            }
            if !mods.is_empty() {
                s.raw(format!(" ({})", mods.join(" ")).as_bytes());
            }
        }
        B::Store {
            set,
            unchanged_since,
            mode,
            silent,
            flags,
            ..
        } => {
            s.raw(b" ");
            s.raw(set.to_string().as_bytes());
            if let Some(u) = unchanged_since {
                s.raw(format!(" (UNCHANGEDSINCE {u})").as_bytes());
            }
            s.raw(match mode {
                StoreMode::Replace => b" ",
                StoreMode::Add => b" +",
                StoreMode::Remove => b" -",
            });
            s.raw(if *silent { b"FLAGS.SILENT " } else { b"FLAGS " });
            flag_list(s, flags);
        }
        B::Copy { set, mailbox, .. } | B::Move { set, mailbox, .. } => {
            s.raw(b" ");
            s.raw(set.to_string().as_bytes());
            s.raw(b" ");
            mailbox_astring(s, mailbox.as_str(), enc);
        }
        B::Id { params } => match params {
            None => s.raw(b" NIL"),
            Some(p) => {
                s.raw(b" (");
                for (i, (k, v)) in p.iter().enumerate() {
                    if i > 0 {
                        s.raw(b" ");
                    }
                    string(s, k);
                    s.raw(b" ");
                    nstring(s, v.as_deref());
                }
                s.raw(b")");
            }
        },
        B::GetQuota { root } => {
            s.raw(b" ");
            astring(s, root.as_bytes());
        }
        B::Compress { mechanism } => {
            s.raw(b" ");
            s.raw(mechanism.as_bytes());
        }
    }
}

fn select_params(s: &mut CmdSink, p: &SelectParams) {
    let mut items = Vec::new();
    if p.condstore {
        items.push("CONDSTORE".to_owned());
    }
    if let Some(q) = &p.qresync {
        let mut t = format!("QRESYNC ({} {}", q.uid_validity, q.mod_seq);
        if let Some(k) = &q.known_uids {
            t.push_str(&format!(" {k}"));
        }
        if let Some((a, b)) = &q.seq_match {
            t.push_str(&format!(" ({a} {b})"));
        }
        t.push(')');
        items.push(t);
    }
    if !items.is_empty() {
        s.raw(format!(" ({})", items.join(" ")).as_bytes());
    }
}

fn list(s: &mut CmdSink, l: &ListCommand, enc: MailboxEncoding) {
    if !l.selection.is_empty() {
        let names: Vec<&str> = l
            .selection
            .iter()
            .map(|o| match o {
                ListSelectOption::Subscribed => "SUBSCRIBED",
                ListSelectOption::Remote => "REMOTE",
                ListSelectOption::RecursiveMatch => "RECURSIVEMATCH",
                ListSelectOption::SpecialUse => "SPECIAL-USE",
            })
            .collect();
        s.raw(format!(" ({})", names.join(" ")).as_bytes());
    }
    s.raw(b" ");
    mailbox_astring(s, &l.reference, enc);
    s.raw(b" ");
    match l.patterns.as_slice() {
        [] => s.raw(b"\"\""),
        [one] => list_mailbox(s, one, enc),
        many => {
            s.raw(b"(");
            for (i, p) in many.iter().enumerate() {
                if i > 0 {
                    s.raw(b" ");
                }
                list_mailbox(s, p, enc);
            }
            s.raw(b")");
        }
    }
    if !l.return_opts.is_empty() {
        s.raw(b" RETURN (");
        for (i, o) in l.return_opts.iter().enumerate() {
            if i > 0 {
                s.raw(b" ");
            }
            match o {
                ListReturnOption::Subscribed => s.raw(b"SUBSCRIBED"),
                ListReturnOption::Children => s.raw(b"CHILDREN"),
                ListReturnOption::SpecialUse => s.raw(b"SPECIAL-USE"),
                ListReturnOption::Status(items) => {
                    s.raw(b"STATUS ");
                    status_items(s, items);
                }
            }
        }
        s.raw(b")");
    }
}

fn search_key(s: &mut CmdSink, k: &SearchKey) {
    use SearchKey as K;
    let text = |s: &mut CmdSink, kw: &str, v: &[u8]| {
        s.raw(kw.as_bytes());
        s.raw(b" ");
        astring(s, v);
    };
    let date = |s: &mut CmdSink, kw: &str, d: &crate::datetime::Date| {
        s.raw(format!("{kw} {d}").as_bytes());
    };
    match k {
        K::All => s.raw(b"ALL"),
        K::Answered => s.raw(b"ANSWERED"),
        K::Bcc(v) => text(s, "BCC", v),
        K::Before(d) => date(s, "BEFORE", d),
        K::Body(v) => text(s, "BODY", v),
        K::Cc(v) => text(s, "CC", v),
        K::Deleted => s.raw(b"DELETED"),
        K::Draft => s.raw(b"DRAFT"),
        K::Flagged => s.raw(b"FLAGGED"),
        K::From(v) => text(s, "FROM", v),
        K::Header(f, v) => {
            text(s, "HEADER", f);
            s.raw(b" ");
            astring(s, v);
        }
        K::Keyword(w) => s.raw(format!("KEYWORD {w}").as_bytes()),
        K::Larger(n) => s.raw(format!("LARGER {n}").as_bytes()),
        K::New => s.raw(b"NEW"),
        K::Not(inner) => {
            s.raw(b"NOT ");
            search_key(s, inner);
        }
        K::Old => s.raw(b"OLD"),
        K::Older(n) => s.raw(format!("OLDER {n}").as_bytes()),
        K::On(d) => date(s, "ON", d),
        K::Or(a, b) => {
            s.raw(b"OR ");
            search_key(s, a);
            s.raw(b" ");
            search_key(s, b);
        }
        K::Recent => s.raw(b"RECENT"),
        K::Seen => s.raw(b"SEEN"),
        K::SentBefore(d) => date(s, "SENTBEFORE", d),
        K::SentOn(d) => date(s, "SENTON", d),
        K::SentSince(d) => date(s, "SENTSINCE", d),
        K::Since(d) => date(s, "SINCE", d),
        K::Smaller(n) => s.raw(format!("SMALLER {n}").as_bytes()),
        K::Subject(v) => text(s, "SUBJECT", v),
        K::Text(v) => text(s, "TEXT", v),
        K::To(v) => text(s, "TO", v),
        K::Uid(set) => s.raw(format!("UID {set}").as_bytes()),
        K::Unanswered => s.raw(b"UNANSWERED"),
        K::Undeleted => s.raw(b"UNDELETED"),
        K::Undraft => s.raw(b"UNDRAFT"),
        K::Unflagged => s.raw(b"UNFLAGGED"),
        K::Unkeyword(w) => s.raw(format!("UNKEYWORD {w}").as_bytes()),
        K::Unseen => s.raw(b"UNSEEN"),
        K::Younger(n) => s.raw(format!("YOUNGER {n}").as_bytes()),
        K::SequenceSet(set) => s.raw(set.to_string().as_bytes()),
        K::And(keys) => {
            s.raw(b"(");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    s.raw(b" ");
                }
                search_key(s, k);
            }
            s.raw(b")");
        }
        K::ModSeq { entry, mod_seq } => {
            s.raw(b"MODSEQ ");
            if let Some(e) = entry {
                let mut name = b"/flags/".to_vec();
                e.flag.write(&mut name);
                let mut q = Vec::new();
                push_quoted(&mut q, &name);
                s.raw(&q);
                s.raw(match e.entry_type {
                    ModSeqEntryType::Private => b" priv ",
                    ModSeqEntryType::Shared => b" shared ",
                    ModSeqEntryType::All => b" all ",
                });
            }
            num(s, *mod_seq);
        }
    }
}

fn fetch_attr(s: &mut CmdSink, a: &FetchAttr) {
    match a {
        FetchAttr::Envelope => s.raw(b"ENVELOPE"),
        FetchAttr::Flags => s.raw(b"FLAGS"),
        FetchAttr::InternalDate => s.raw(b"INTERNALDATE"),
        FetchAttr::Rfc822 => s.raw(b"RFC822"),
        FetchAttr::Rfc822Header => s.raw(b"RFC822.HEADER"),
        FetchAttr::Rfc822Size => s.raw(b"RFC822.SIZE"),
        FetchAttr::Rfc822Text => s.raw(b"RFC822.TEXT"),
        FetchAttr::Body => s.raw(b"BODY"),
        FetchAttr::BodyStructure => s.raw(b"BODYSTRUCTURE"),
        FetchAttr::Uid => s.raw(b"UID"),
        FetchAttr::ModSeq => s.raw(b"MODSEQ"),
        FetchAttr::BodySection {
            peek,
            section: sec,
            partial: p,
        } => {
            s.raw(if *peek { b"BODY.PEEK" } else { b"BODY" });
            section(s, sec);
            partial(s, p);
        }
        FetchAttr::Binary {
            peek,
            part,
            partial: p,
        } => {
            s.raw(if *peek { b"BINARY.PEEK" } else { b"BINARY" });
            binary_section(s, part);
            partial(s, p);
        }
        FetchAttr::BinarySize { part } => {
            s.raw(b"BINARY.SIZE");
            binary_section(s, part);
        }
    }
}
