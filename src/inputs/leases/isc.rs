//! `dhcpd.leases`: a tokenizer and a statement reader over it.

use super::*;

#[derive(Debug, PartialEq)]
pub(super) enum Tok<'a> {
    Word(&'a str),
    /// A quoted string with its escapes undone.
    Str(Vec<u8>),
    Semi,
    Open,
    Close,
    /// A string with no closing quote on its line.
    BadStr,
}

pub(super) struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
    back: Option<(usize, Tok<'a>)>,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Lexer {
            s,
            b: s.as_bytes(),
            pos: 0,
            line: 1,
            back: None,
        }
    }

    pub(super) fn push_back(&mut self, line: usize, t: Tok<'a>) {
        self.back = Some((line, t));
    }

    /// The next token and the line it is on.
    pub(super) fn next_tok(&mut self) -> Option<(usize, Tok<'a>)> {
        if let Some(t) = self.back.take() {
            return Some(t);
        }
        let b = self.b;
        loop {
            let c = *b.get(self.pos)?;
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b'#' => {
                    while self.pos < b.len() && b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                c if c.is_ascii_whitespace() => self.pos += 1,
                _ => break,
            }
        }
        let line = self.line;
        let c = b[self.pos];
        let tok = match c {
            b';' => {
                self.pos += 1;
                Tok::Semi
            }
            b'{' => {
                self.pos += 1;
                Tok::Open
            }
            b'}' => {
                self.pos += 1;
                Tok::Close
            }
            b'"' => self.string(),
            _ => {
                let start = self.pos;
                while self.pos < b.len()
                    && !b[self.pos].is_ascii_whitespace()
                    && !matches!(b[self.pos], b';' | b'{' | b'}' | b'"' | b'#')
                {
                    self.pos += 1;
                }
                // cut at ASCII bytes only, so always on a char boundary
                Tok::Word(&self.s[start..self.pos])
            }
        };
        Some((line, tok))
    }

    /// After the opening quote: dhcpd's escapes are `\"`, `\\`, `\ooo`
    /// (octal) and the C letters.
    fn string(&mut self) -> Tok<'a> {
        let b = self.b;
        self.pos += 1;
        let mut v = Vec::new();
        while let Some(&c) = b.get(self.pos) {
            self.pos += 1;
            match c {
                b'"' => return Tok::Str(v),
                b'\n' => {
                    self.line += 1;
                    return Tok::BadStr;
                }
                b'\\' => {
                    let Some(&e) = b.get(self.pos) else {
                        return Tok::BadStr;
                    };
                    self.pos += 1;
                    match e {
                        b'0'..=b'7' => {
                            let mut n = u32::from(e - b'0');
                            for _ in 0..2 {
                                match b.get(self.pos) {
                                    Some(&d @ b'0'..=b'7') => {
                                        n = n * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            v.push((n & 0xff) as u8);
                        }
                        b'n' => v.push(b'\n'),
                        b't' => v.push(b'\t'),
                        b'r' => v.push(b'\r'),
                        b'\n' => {
                            self.line += 1;
                            return Tok::BadStr;
                        }
                        other => v.push(other),
                    }
                }
                _ => v.push(c),
            }
        }
        Tok::BadStr
    }
}

/// What a statement inside a block holds: its first few tokens (the rest
/// are counted, not kept) and how it ended.
struct Stmt<'a> {
    line: usize,
    toks: Vec<Tok<'a>>,
    more: usize,
    /// The line of a string in it with no closing quote.
    bad_str: Option<usize>,
}

const STMT_KEEP: usize = 8;

enum BlockItem<'a> {
    Stmt(Stmt<'a>),
    /// A statement followed by `{`: the caller reads or skips that block.
    Open(Stmt<'a>),
    End,
}

/// How a block ended badly.
enum Broken {
    /// End of file before `}`.
    Eof,
    /// A top-level keyword where a statement was expected: the `}` is
    /// missing (the keyword is pushed back for the top level).
    NewTop,
    /// `}` in the middle of a statement (line).
    NoSemi(usize),
}

/// The next item of the block being read.
fn block_item<'a>(lx: &mut Lexer<'a>) -> Result<BlockItem<'a>, Broken> {
    let mut st = Stmt {
        line: 0,
        toks: Vec::new(),
        more: 0,
        bad_str: None,
    };
    loop {
        let Some((line, t)) = lx.next_tok() else {
            return Err(Broken::Eof);
        };
        if st.toks.is_empty() && st.more == 0 && st.bad_str.is_none() {
            st.line = line;
            if let Tok::Word(w) = t
                && matches!(w, "lease" | "ia-na" | "ia-ta" | "ia-pd" | "failover")
            {
                lx.push_back(line, t);
                return Err(Broken::NewTop);
            }
        }
        match t {
            Tok::Semi => return Ok(BlockItem::Stmt(st)),
            Tok::Close if st.toks.is_empty() && st.more == 0 && st.bad_str.is_none() => {
                return Ok(BlockItem::End);
            }
            Tok::Close => return Err(Broken::NoSemi(line)),
            Tok::Open => return Ok(BlockItem::Open(st)),
            // the lexer ended it at the end of its line: the statement
            // is spoilt, the block goes on
            Tok::BadStr => {
                st.bad_str.get_or_insert(line);
            }
            t => {
                if st.toks.len() < STMT_KEEP {
                    st.toks.push(t);
                } else {
                    st.more += 1;
                }
            }
        }
    }
}

/// After a `{`: skips to its matching `}`.
fn skip_block(lx: &mut Lexer<'_>) -> Result<(), Broken> {
    let mut depth = 1usize;
    loop {
        match lx.next_tok() {
            None => return Err(Broken::Eof),
            Some((_, Tok::Open)) => depth += 1,
            Some((_, Tok::Close)) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            Some(_) => {}
        }
    }
}

fn bad_str_msg(what: &str, line: usize) -> String {
    format!(
        "{what}: string on line {line} has no closing '\"' (expected a quoted string on one line)"
    )
}

fn broken_msg(what: &str, b: &Broken) -> String {
    match b {
        Broken::Eof => format!("{what} has no closing '}}' before the end of the file"),
        Broken::NewTop => {
            format!("{what} has no closing '}}' before the next top-level statement")
        }
        Broken::NoSemi(l) => {
            format!("{what}: statement ending on line {l} has no ';' before '}}'")
        }
    }
}

/// A statement outside any block we read: skipped whole.
fn skip_statement(lx: &mut Lexer<'_>) -> Result<(), Broken> {
    loop {
        match lx.next_tok() {
            None => return Err(Broken::Eof),
            Some((_, Tok::Semi)) => return Ok(()),
            Some((_, Tok::Open)) => return skip_block(lx),
            Some((line, Tok::Close)) => return Err(Broken::NoSemi(line)),
            Some(_) => {}
        }
    }
}

pub(super) fn parse(text: &str, out: &mut Out, errs: &mut Errors<'_>) {
    let mut lx = Lexer::new(text);
    while let Some((line, t)) = lx.next_tok() {
        match t {
            Tok::Word("lease") => lease(&mut lx, line, out, errs),
            Tok::Word(w @ ("ia-na" | "ia-ta")) => ia(&mut lx, line, w, out, errs),
            Tok::Semi => {}
            Tok::Close => errs.push(line, "'}' with no block open".to_string()),
            Tok::Open => {
                if let Err(b) = skip_block(&mut lx) {
                    errs.push(line, broken_msg("block", &b));
                }
            }
            Tok::BadStr => {
                errs.push(
                    line,
                    "string has no closing '\"' (expected a quoted string on one line)".to_string(),
                );
            }
            Tok::Word(_) | Tok::Str(_) => {
                if let Err(b) = skip_statement(&mut lx) {
                    errs.push(line, broken_msg("statement", &b));
                }
            }
        }
    }
}

/// `starts|ends|cltt …;` operands: `W YYYY/MM/DD HH:MM:SS`,
/// `YYYY/MM/DD HH:MM:SS`, `epoch N` or `never` (`Ok(None)`).
fn time(toks: &[Tok<'_>]) -> Result<Option<Timestamp>, ()> {
    let words: Vec<&str> = toks
        .iter()
        .map(|t| match t {
            Tok::Word(w) => Ok(*w),
            _ => Err(()),
        })
        .collect::<Result<_, _>>()?;
    match words.as_slice() {
        ["never"] => Ok(None),
        ["epoch", n] => n
            .parse::<u64>()
            .map(|s| Some(Timestamp::from_secs(s)))
            .map_err(|_| ()),
        [wd, d, t] if wd.len() == 1 && wd.bytes().all(|b| (b'0'..=b'6').contains(&b)) => {
            civil(d, t).map(Some)
        }
        [d, t] => civil(d, t).map(Some),
        _ => Err(()),
    }
}

fn civil(d: &str, t: &str) -> Result<Timestamp, ()> {
    let num = |s: &str| -> Result<u32, ()> {
        if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| ())
        } else {
            Err(())
        }
    };
    let mut dp = d.split('/');
    let mut tp = t.split(':');
    let (y, mo, da) = (
        num(dp.next().ok_or(())?)?,
        num(dp.next().ok_or(())?)?,
        num(dp.next().ok_or(())?)?,
    );
    let (h, mi, s) = (
        num(tp.next().ok_or(())?)?,
        num(tp.next().ok_or(())?)?,
        num(tp.next().ok_or(())?)?,
    );
    if dp.next().is_some() || tp.next().is_some() || y < 1970 {
        return Err(());
    }
    Timestamp::from_civil(i64::from(y), mo, da, h, mi, s).ok_or(())
}

fn time_words(toks: &[Tok<'_>]) -> String {
    let mut s = String::new();
    for t in toks {
        if !s.is_empty() {
            s.push(' ');
        }
        match t {
            Tok::Word(w) => s.push_str(w),
            Tok::Str(v) => s.push_str(&format!("\"{}\"", String::from_utf8_lossy(v))),
            _ => {}
        }
    }
    shown(&s)
}

/// A uid: a quoted string or colon-separated hex octets.
fn uid(toks: &[Tok<'_>]) -> Option<String> {
    match toks {
        [Tok::Str(v)] => Some(hex(v)),
        [Tok::Word(w)] => colon_hex(w).map(|v| hex(&v)),
        _ => None,
    }
}

/// What one lease / iaaddr block said.
#[derive(Default)]
struct Fields {
    starts: Option<Option<Timestamp>>,
    ends: Option<Option<Timestamp>>,
    cltt: Option<Option<Timestamp>>,
    mac: Option<[u8; 6]>,
    state: Option<String>,
    uid: Option<String>,
    hostname: Option<String>,
}

/// Reads the statements of a block into `f`; the first problem is the
/// error message for the whole entry.
fn fields(lx: &mut Lexer<'_>, what: &str, f: &mut Fields) -> Result<(), String> {
    let mut bad: Option<String> = None;
    loop {
        let st = match block_item(lx) {
            Ok(BlockItem::End) => break,
            Ok(BlockItem::Open(_)) => {
                // `on expiry { … }` and the like
                skip_block(lx).map_err(|b| broken_msg(what, &b))?;
                continue;
            }
            Ok(BlockItem::Stmt(st)) => st,
            Err(b) => return Err(broken_msg(what, &b)),
        };
        if bad.is_some() {
            continue;
        }
        if let Some(l) = st.bad_str {
            bad = Some(bad_str_msg(what, l));
            continue;
        }
        let Some(Tok::Word(kw)) = st.toks.first() else {
            continue;
        };
        let rest = &st.toks[1..];
        let l = st.line;
        match *kw {
            k @ ("starts" | "ends" | "cltt") => {
                if st.more > 0 {
                    bad = Some(format!("{what}: `{k}` on line {l} is too long"));
                    continue;
                }
                match time(rest) {
                    Ok(t) => {
                        let slot = match k {
                            "starts" => &mut f.starts,
                            "ends" => &mut f.ends,
                            _ => &mut f.cltt,
                        };
                        *slot = Some(t);
                    }
                    Err(()) => {
                        bad = Some(format!(
                            "{what}: `{k}` time {} on line {l} is not a time: expected \
                             `{k} W YYYY/MM/DD HH:MM:SS;` (UTC), `{k} epoch N;` or `{k} never;`",
                            time_words(rest)
                        ))
                    }
                }
            }
            "hardware" => match rest {
                [Tok::Word("ethernet"), Tok::Word(m)] => match parse_mac(m) {
                    Some(m) => f.mac = Some(m),
                    None => {
                        bad = Some(format!(
                            "{what}: `hardware ethernet {}` on line {l}: expected a MAC \
                             address like 02:00:5e:10:00:01",
                            shown(m)
                        ))
                    }
                },
                // another link type (token-ring, fddi, infiniband): no MAC
                [Tok::Word(t), ..] if *t != "ethernet" => {}
                _ => {
                    bad = Some(format!(
                        "{what}: `hardware` on line {l}: expected `hardware ethernet MAC;`"
                    ))
                }
            },
            "binding" => match rest {
                [Tok::Word("state"), Tok::Word(s)] => f.state = Some(s.to_string()),
                _ => {
                    bad = Some(format!(
                        "{what}: `binding` on line {l}: expected `binding state STATE;`"
                    ))
                }
            },
            "uid" => match uid(rest) {
                Some(u) => f.uid = Some(u),
                None => {
                    bad = Some(format!(
                        "{what}: `uid` on line {l}: expected a quoted string or \
                         colon-separated hex octets"
                    ))
                }
            },
            "client-hostname" => match rest {
                [Tok::Str(v)] => f.hostname = host(&String::from_utf8_lossy(v)),
                _ => {
                    bad = Some(format!(
                        "{what}: `client-hostname` on line {l}: expected a quoted string"
                    ))
                }
            },
            _ => {}
        }
    }
    match bad {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

/// `true` when the binding state says a client holds (or held) it.
fn held(state: Option<&str>) -> Result<bool, String> {
    match state {
        None | Some("active" | "expired" | "released") => Ok(true),
        Some("free" | "backup" | "abandoned" | "reset") => Ok(false),
        Some(s) => Err(format!(
            "binding state {}: expected active, expired, released, free, backup, abandoned \
             or reset",
            shown(s)
        )),
    }
}

fn lease(lx: &mut Lexer<'_>, line: usize, out: &mut Out, errs: &mut Errors<'_>) {
    // `lease IP {`
    let ip = match lx.next_tok() {
        Some((_, Tok::Word(w))) => w.parse::<Ipv4Addr>().map_err(|_| w.to_string()),
        Some((l, t)) => {
            lx.push_back(l, t);
            Err(String::new())
        }
        None => Err(String::new()),
    };
    match lx.next_tok() {
        Some((_, Tok::Open)) => {}
        other => {
            if let Some((l, t)) = other {
                lx.push_back(l, t);
            }
            errs.push(
                line,
                "`lease` statement: expected `lease IPV4-ADDRESS {`".to_string(),
            );
            return;
        }
    }
    let what = match &ip {
        Ok(ip) => format!("lease {ip}"),
        Err(w) => format!("lease {}", shown(w)),
    };
    let mut f = Fields::default();
    let read = fields(lx, &what, &mut f);
    let ip = match ip {
        Ok(ip) => ip,
        Err(_) => {
            errs.push(
                line,
                format!("{what}: not an IPv4 address (expected `lease IPV4-ADDRESS {{`)"),
            );
            return;
        }
    };
    if let Err(m) = read {
        errs.push(line, m);
        return;
    }
    let held = match held(f.state.as_deref()) {
        Ok(h) => h,
        Err(m) => {
            errs.push(line, format!("{what}: {m}"));
            return;
        }
    };
    let ip = IpAddr::V4(ip);
    if !held {
        if let Some(Some(at)) = f.ends {
            out.close(ip, f.mac, f.uid.as_deref(), at, true);
        }
        return;
    }
    let Some(end) = f.ends else {
        errs.push(
            line,
            format!("{what}: no `ends` (expected `ends W YYYY/MM/DD HH:MM:SS;` or `ends never;`)"),
        );
        return;
    };
    out.add(Lease {
        ip,
        mac: f.mac,
        start: f.starts.flatten(),
        end,
        hostname: f.hostname,
        client_id: f.uid,
        source: "isc_dhcpd",
    });
}

/// `ia-na "IAID+DUID" { cltt …; iaaddr IP { … } … }`
fn ia(lx: &mut Lexer<'_>, line: usize, kw: &str, out: &mut Out, errs: &mut Errors<'_>) {
    let id = match lx.next_tok() {
        Some((_, Tok::Str(v))) => Some(v),
        Some((_, Tok::Word(w))) => colon_hex(w),
        Some((l, t)) => {
            lx.push_back(l, t);
            None
        }
        None => None,
    };
    match lx.next_tok() {
        Some((_, Tok::Open)) => {}
        other => {
            if let Some((l, t)) = other {
                lx.push_back(l, t);
            }
            errs.push(
                line,
                format!("`{kw}` statement: expected `{kw} \"IAID+DUID\" {{`"),
            );
            return;
        }
    }
    let mut cltt = None;
    let mut addrs: Vec<(Ipv6Addr, Fields)> = Vec::new();
    let mut bad: Option<String> = None;
    loop {
        match block_item(lx) {
            Ok(BlockItem::End) => break,
            Ok(BlockItem::Stmt(st)) => {
                if let Some(l) = st.bad_str {
                    bad.get_or_insert(bad_str_msg(kw, l));
                } else if let [Tok::Word("cltt"), rest @ ..] = st.toks.as_slice() {
                    match time(rest) {
                        Ok(t) => cltt = t,
                        Err(()) => {
                            bad.get_or_insert(format!(
                                "{kw}: `cltt` time {} on line {}: expected `cltt W \
                                 YYYY/MM/DD HH:MM:SS;`",
                                time_words(rest),
                                st.line
                            ));
                        }
                    }
                }
            }
            Ok(BlockItem::Open(st)) => {
                if let Some(l) = st.bad_str {
                    bad.get_or_insert(bad_str_msg(kw, l));
                }
                let addr = match st.toks.as_slice() {
                    [Tok::Word("iaaddr"), Tok::Word(a)] => {
                        Some(a.parse::<Ipv6Addr>().map_err(|_| {
                            format!(
                                "{kw}: iaaddr {} on line {}: expected an IPv6 address",
                                shown(a),
                                st.line
                            )
                        }))
                    }
                    _ => None, // iaprefix and anything else: not an address
                };
                let mut f = Fields::default();
                let read = match addr {
                    Some(_) => fields(lx, kw, &mut f),
                    None => skip_block(lx).map_err(|b| broken_msg(kw, &b)),
                };
                if let Err(m) = read {
                    errs.push(line, m);
                    return;
                }
                match addr {
                    Some(Ok(a)) => addrs.push((a, f)),
                    Some(Err(m)) => {
                        bad.get_or_insert(m);
                    }
                    None => {}
                }
            }
            Err(b) => {
                errs.push(line, broken_msg(kw, &b));
                return;
            }
        }
    }
    if let Some(m) = bad {
        errs.push(line, m);
        return;
    }
    let Some(id) = id.filter(|v| v.len() > 4) else {
        errs.push(
            line,
            format!("`{kw}`: expected a quoted IAID (4 bytes) followed by the client's DUID"),
        );
        return;
    };
    let duid = &id[4..];
    let mac = duid_mac(duid);
    let client_id = hex(duid);
    for (a, f) in addrs {
        let ip = IpAddr::V6(a);
        let held = match held(f.state.as_deref()) {
            Ok(h) => h,
            Err(m) => {
                errs.push(line, format!("{kw} iaaddr {a}: {m}"));
                continue;
            }
        };
        let Some(end) = f.ends else {
            if held {
                errs.push(
                    line,
                    format!("{kw} iaaddr {a}: no `ends` (expected `ends W YYYY/MM/DD HH:MM:SS;`)"),
                );
            }
            continue;
        };
        if !held {
            if let Some(at) = end {
                out.close(ip, mac, Some(&client_id), at, true);
            }
            continue;
        }
        out.add(Lease {
            ip,
            mac,
            start: cltt,
            end,
            hostname: None,
            client_id: Some(client_id.clone()),
            source: "isc_dhcpd",
        });
    }
}
