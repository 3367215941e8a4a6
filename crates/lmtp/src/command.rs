//! Command line parsing: verbs and the arguments of `LHLO`, `MAIL` and
//! `RCPT`.
//!
//! Keywords are case-insensitive. `MAIL FROM: <a@b>` (space after the colon)
//! is tolerated. Errors are returned as the [`Reply`] to send, so the state
//! machine can answer directly.

use crate::address::{Address, parse_path};
use crate::config::MAX_HOSTNAME_BYTES;
use crate::envelope::BodyType;
use crate::reply::{EnhancedCode, Reply};

/// Command verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Lhlo,
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    /// Known SMTP verbs we do not implement (`STARTTLS`, `AUTH`, `BDAT`...).
    NotImplemented,
    Unknown,
}

const NOT_IMPLEMENTED: &[&[u8]] = &[
    b"STARTTLS",
    b"AUTH",
    b"BDAT",
    b"EXPN",
    b"ETRN",
    b"TURN",
    b"ATRN",
    b"SEND",
    b"SOML",
    b"SAML",
];

/// Splits a command line (without line end) into verb and arguments; the
/// arguments start after the first space (further leading spaces are kept,
/// callers decide whether to tolerate them).
pub(crate) fn split_command(line: &[u8]) -> (Verb, &[u8]) {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let (keyword, args) = (&line[..end], line.get(end + 1..).unwrap_or(b""));
    let is = |k: &[u8]| keyword.eq_ignore_ascii_case(k);
    let verb = if is(b"LHLO") {
        Verb::Lhlo
    } else if is(b"EHLO") {
        Verb::Ehlo
    } else if is(b"HELO") {
        Verb::Helo
    } else if is(b"MAIL") {
        Verb::Mail
    } else if is(b"RCPT") {
        Verb::Rcpt
    } else if is(b"DATA") {
        Verb::Data
    } else if is(b"RSET") {
        Verb::Rset
    } else if is(b"NOOP") {
        Verb::Noop
    } else if is(b"QUIT") {
        Verb::Quit
    } else if is(b"VRFY") {
        Verb::Vrfy
    } else if is(b"HELP") {
        Verb::Help
    } else if NOT_IMPLEMENTED.iter().any(|k| is(k)) {
        Verb::NotImplemented
    } else {
        Verb::Unknown
    };
    (verb, args)
}

pub(crate) fn syntax_error(text: &str) -> Reply {
    Reply::new(501, EnhancedCode::new(5, 5, 4), text)
}

/// Arguments as text; non-UTF-8 or control characters are a syntax error.
pub(crate) fn args_text<'a>(args: &'a [u8], usage: &str) -> Result<&'a str, Reply> {
    match std::str::from_utf8(args) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => Ok(s),
        _ => Err(syntax_error(usage)),
    }
}

/// Parses the `LHLO` argument: one printable-ASCII word.
pub(crate) fn parse_lhlo(args: &[u8]) -> Result<String, Reply> {
    const USAGE: &str = "Syntax: LHLO hostname";
    let arg = args_text(args, USAGE)?.trim_matches(|c| c == ' ' || c == '\t');
    if arg.is_empty() {
        return Err(syntax_error(USAGE));
    }
    if arg.len() > MAX_HOSTNAME_BYTES || !arg.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(syntax_error("Error: invalid LHLO hostname"));
    }
    Ok(arg.to_owned())
}

/// Parsed `MAIL FROM` arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MailArgs {
    pub(crate) sender: Option<Address>,
    /// `SIZE=`; values that overflow `u64` saturate.
    pub(crate) size: Option<u64>,
    pub(crate) body: Option<BodyType>,
}

/// Strips `FROM:`/`TO:` (case-insensitive) and tolerates spaces around it.
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let args = args.trim_start_matches(' ');
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| args[keyword.len()..].trim_start_matches(' '))
}

/// Splits `rest` (text after the path) into `KEYWORD[=value]` parameters.
fn params(rest: &str) -> Result<Vec<(&str, Option<&str>)>, Reply> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(syntax_error("Error: garbage after address"));
    }
    let mut out = Vec::new();
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (keyword, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let keyword_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value
            .is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b'='));
        if !keyword_ok || !value_ok {
            return Err(syntax_error("Error: malformed parameter"));
        }
        out.push((keyword, value));
    }
    Ok(out)
}

fn unsupported_parameter(keyword: &str) -> Reply {
    Reply::new(
        555,
        EnhancedCode::new(5, 5, 4),
        format!("Error: unsupported parameter {keyword}"),
    )
}

/// Parses the arguments of `MAIL`.
pub(crate) fn parse_mail(args: &[u8]) -> Result<MailArgs, Reply> {
    const USAGE: &str = "Syntax: MAIL FROM:<address>";
    let args = args_text(args, USAGE)?;
    let path = strip_keyword(args, "FROM:").ok_or_else(|| syntax_error(USAGE))?;
    let (sender, rest) = parse_path(path, false).map_err(|e| {
        Reply::new(
            501,
            EnhancedCode::new(5, 1, 7),
            format!("Bad sender address syntax: {e}"),
        )
    })?;
    let mut mail = MailArgs {
        sender,
        size: None,
        body: None,
    };
    for (keyword, value) in params(rest)? {
        if keyword.eq_ignore_ascii_case("SIZE") {
            let v = value.filter(|v| v.bytes().all(|b| b.is_ascii_digit()));
            let (None, Some(v)) = (mail.size, v) else {
                return Err(syntax_error("Error: bad or duplicate SIZE parameter"));
            };
            mail.size = Some(v.parse().unwrap_or(u64::MAX));
        } else if keyword.eq_ignore_ascii_case("BODY") {
            let body = match value {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => BodyType::SevenBit,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => BodyType::EightBitMime,
                _ => return Err(syntax_error("Error: bad BODY parameter")),
            };
            if mail.body.replace(body).is_some() {
                return Err(syntax_error("Error: duplicate BODY parameter"));
            }
        } else {
            return Err(unsupported_parameter(keyword));
        }
    }
    Ok(mail)
}

/// Parses the arguments of `RCPT`.
pub(crate) fn parse_rcpt(args: &[u8]) -> Result<Address, Reply> {
    const USAGE: &str = "Syntax: RCPT TO:<address>";
    let bad = |text: String| Reply::new(501, EnhancedCode::new(5, 1, 3), text);
    let args = args_text(args, USAGE)?;
    let path = strip_keyword(args, "TO:").ok_or_else(|| syntax_error(USAGE))?;
    let (address, rest) =
        parse_path(path, true).map_err(|e| bad(format!("Bad recipient address syntax: {e}")))?;
    let address = address.ok_or_else(|| bad("Bad recipient address syntax: null path".into()))?;
    if let Some((keyword, _)) = params(rest)?.first() {
        return Err(unsupported_parameter(keyword));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_verbs_case_insensitively() {
        assert_eq!(split_command(b"lhlo x"), (Verb::Lhlo, &b"x"[..]));
        assert_eq!(
            split_command(b"MaIl FROM:<>"),
            (Verb::Mail, &b"FROM:<>"[..])
        );
        assert_eq!(split_command(b"DATA"), (Verb::Data, &b""[..]));
        assert_eq!(split_command(b"starttls"), (Verb::NotImplemented, &b""[..]));
        assert_eq!(split_command(b"MAILX"), (Verb::Unknown, &b""[..]));
        assert_eq!(split_command(b""), (Verb::Unknown, &b""[..]));
    }

    #[test]
    fn mail_arguments() {
        let m = parse_mail(b"FROM:<a@b> SIZE=100 BODY=8bitmime").unwrap();
        assert_eq!(m.sender, Some(Address::new("a", "b")));
        assert_eq!(m.size, Some(100));
        assert_eq!(m.body, Some(BodyType::EightBitMime));
        let m = parse_mail(b"from: <>").unwrap();
        assert_eq!((m.sender, m.size, m.body), (None, None, None));
        assert_eq!(
            parse_mail(b"FROM:<> SIZE=99999999999999999999999")
                .unwrap()
                .size,
            Some(u64::MAX)
        );
        assert_eq!(
            parse_mail(b"FROM:<> body=7bit").unwrap().body,
            Some(BodyType::SevenBit)
        );
    }

    #[test]
    fn mail_errors() {
        let code = |args: &[u8]| parse_mail(args).unwrap_err().to_string();
        assert_eq!(code(b"TO:<a@b>"), "501 5.5.4 Syntax: MAIL FROM:<address>");
        assert_eq!(code(b""), "501 5.5.4 Syntax: MAIL FROM:<address>");
        assert!(code(b"FROM:a@b").starts_with("501 5.1.7 "));
        assert!(code(b"FROM:<a@b>SIZE=1").starts_with("501 5.5.4 "));
        assert!(code(b"FROM:<a@b> SIZE=x").starts_with("501 5.5.4 "));
        assert!(code(b"FROM:<a@b> SIZE").starts_with("501 5.5.4 "));
        assert!(code(b"FROM:<a@b> SIZE=1 SIZE=2").starts_with("501 5.5.4 "));
        assert!(code(b"FROM:<a@b> BODY=BINARYMIME").starts_with("501 5.5.4 "));
        assert!(code(b"FROM:<a@b> BODY=7BIT BODY=7BIT").starts_with("501 5.5.4 "));
        assert_eq!(
            code(b"FROM:<a@b> SMTPUTF8"),
            "555 5.5.4 Error: unsupported parameter SMTPUTF8"
        );
        assert!(code(b"FROM:<a@b> =x").starts_with("501 5.5.4 "));
        assert!(code(b"FROM:<a@b\xff>").starts_with("501 5.5.4 "));
    }

    #[test]
    fn rcpt_arguments() {
        assert_eq!(parse_rcpt(b"TO:<u+d@x>"), Ok(Address::new("u+d", "x")));
        assert_eq!(parse_rcpt(b"to: <u@x>"), Ok(Address::new("u", "x")));
        assert_eq!(
            parse_rcpt(b"TO:<Postmaster>"),
            Ok(Address::new("Postmaster", ""))
        );
        assert!(
            parse_rcpt(b"TO:<>")
                .unwrap_err()
                .to_string()
                .starts_with("501 5.1.3 ")
        );
        assert!(
            parse_rcpt(b"TO:<a>")
                .unwrap_err()
                .to_string()
                .starts_with("501 5.1.3 ")
        );
        assert!(
            parse_rcpt(b"FROM:<a@b>")
                .unwrap_err()
                .to_string()
                .starts_with("501 5.5.4 ")
        );
        assert!(
            parse_rcpt(b"TO:<a@b> NOTIFY=NEVER")
                .unwrap_err()
                .to_string()
                .starts_with("555 5.5.4 ")
        );
    }

    #[test]
    fn lhlo_argument() {
        assert_eq!(parse_lhlo(b"mx.example"), Ok("mx.example".into()));
        assert_eq!(parse_lhlo(b" [192.0.2.1] "), Ok("[192.0.2.1]".into()));
        assert!(parse_lhlo(b"").is_err());
        assert!(parse_lhlo(b"two words").is_err());
        assert!(parse_lhlo("ümlaut".as_bytes()).is_err());
        assert!(parse_lhlo(&[b'a'; 256]).is_err());
    }
}
