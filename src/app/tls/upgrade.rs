//! TLS after a plaintext start: the "prelude" a protocol speaks before its
//! TLS handshake, one small reader per protocol (the way Suricata's
//! protocol-change support and Zeek's STARTTLS analyzers hand a flow over
//! to TLS). Each reader takes the client's and the server's bytes,
//! recognises the upgrade request and the server's agreement, and says at
//! which stream offset TLS starts in each direction:
//!
//! | `upgrade` | client asks | server agrees (anything else: no TLS) |
//! | --- | --- | --- |
//! | `smtp`, `lmtp` | `STARTTLS` (RFC 3207; `LHLO` earlier: LMTP, RFC 2033) | its reply `220` |
//! | `ftp` | `AUTH TLS` / `AUTH SSL` (RFC 4217) | its reply `234` |
//! | `imap` | `tag STARTTLS` (RFC 9051 §6.2.1) | `tag OK` |
//! | `pop3` | `STLS` (RFC 2595 §4) | `+OK` |
//! | `xmpp` | `<starttls/>` (RFC 6120 §5.4) | `<proceed/>` |
//! | `ldap` | ExtendedRequest 1.3.6.1.4.1.1466.20037 (RFC 4511 §4.14) | ExtendedResponse resultCode 0, same message id |
//! | `postgres` | SSLRequest, code 80877103 (a GSSENCRequest answered `N` before it is allowed) | `S` |
//! | `mysql` | the 32-byte SSL request with CLIENT_SSL | its greeting had CLIENT_SSL |
//! | `socks4` | CONNECT (4a: with a host name) | reply code 0x5A |
//! | `socks5` | methods, optional user/password (RFC 1929), CONNECT (RFC 1928) | method chosen, auth status 0, reply 0x00 |
//! | `http_connect` | `CONNECT host:port` | status 2xx |
//!
//! Replies are matched to requests by count (SMTP, FTP, POP3: one final
//! reply per command, after the greeting), by tag (IMAP) or message id
//! (LDAP), so pipelined commands do not confuse it. Client bytes sent after
//! the request and before the answer are held and handed to TLS with the
//! agreement.
//!
//! Bounded: at most [`MAX_PRELUDE`] bytes per direction are read before the
//! upgrade; past that the flow is taken as plain (`Stop::Cap`, counted). All
//! matching resumes where the last search stopped, so a stream fed a byte
//! at a time costs linear time.

/// Plaintext bytes read per direction before TLS starts (a STARTTLS comes
/// after a greeting and a capability list, a few hundred bytes; XMPP's
/// stream features and LDAP's StartTLS request are under 2 KiB). Past it
/// the flow is plain to us.
pub const MAX_PRELUDE: usize = 16 << 10;
/// Longest target name kept (`host:port` of SOCKS or CONNECT).
const MAX_TARGET: usize = 300;
/// Longest IMAP tag kept (RFC 9051 has no limit; clients use a few bytes).
const MAX_TAG: usize = 64;

/// The OID of LDAP's StartTLS extended operation (RFC 4511 §4.14.1).
const LDAP_STARTTLS: &[u8] = b"1.3.6.1.4.1.1466.20037";
/// PostgreSQL's SSLRequest and GSSENCRequest: length 8 and the codes.
const PG_SSL: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const PG_GSS: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
/// MySQL's CLIENT_SSL capability flag.
const MYSQL_CLIENT_SSL: u32 = 0x0800;

/// Which protocol's prelude a flow is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `220` greeting: SMTP, LMTP or FTP, told apart by the client's command.
    Reply220,
    Imap,
    Pop3,
    Xmpp,
    Ldap,
    Postgres,
    Mysql,
    Socks4,
    Socks5,
    HttpConnect,
}

/// Why the prelude ended without TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The server refused the upgrade (SMTP 454, Postgres `N`, SOCKS 0x5B, ...).
    Refused,
    /// The bytes are not (or no longer) this protocol's.
    NotProtocol,
    /// [`MAX_PRELUDE`] bytes read in a direction without an upgrade.
    Cap,
}

impl Kind {
    /// The prelude to read a flow with, from its first payload (`dir` 0:
    /// the client's, 1: the server's) and the server's port; `None` when
    /// neither says one. Call only when the bytes are not TLS already.
    pub fn probe(first: &[u8], dir: usize, server_port: u16) -> Option<Kind> {
        if dir == 0 {
            if first.starts_with(b"CONNECT ") {
                return Some(Kind::HttpConnect);
            }
            if first.starts_with(&PG_SSL) || first.starts_with(&PG_GSS) {
                return Some(Kind::Postgres);
            }
            if first.starts_with(b"<?xml") || first.starts_with(b"<stream:stream") {
                return Some(Kind::Xmpp);
            }
            match first {
                [4, 1, _, _, _, _, _, _, ..] if first.len() >= 9 => return Some(Kind::Socks4),
                [5, n, ..] if *n > 0 && first.len() == 2 + usize::from(*n) => {
                    return Some(Kind::Socks5);
                }
                [0x30, ..] if first.len() <= 256 && contains(first, LDAP_STARTTLS) => {
                    return Some(Kind::Ldap);
                }
                _ => {}
            }
        } else {
            if first.starts_with(b"220 ") || first.starts_with(b"220-") {
                return Some(Kind::Reply220);
            }
            if first.starts_with(b"* OK") {
                return Some(Kind::Imap);
            }
            if first.starts_with(b"+OK") {
                return Some(Kind::Pop3);
            }
            if let [a, b, c, 0, 10, ..] = first
                && usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16 == first.len() - 4
            {
                return Some(Kind::Mysql);
            }
        }
        Some(match server_port {
            21 | 24 | 25 | 587 => Kind::Reply220,
            143 => Kind::Imap,
            110 => Kind::Pop3,
            5222 => Kind::Xmpp,
            389 => Kind::Ldap,
            5432 => Kind::Postgres,
            3306 => Kind::Mysql,
            1080 if dir == 0 && first.first() == Some(&4) => Kind::Socks4,
            1080 if dir == 0 && first.first() == Some(&5) => Kind::Socks5,
            _ => return None,
        })
    }
}

/// One flow's prelude: both directions' bytes until TLS starts in each.
#[derive(Debug)]
pub struct Prelude {
    pub kind: Kind,
    /// The server's port (names a plain `220` flow on 21 `ftp`).
    server_port: u16,
    buf: [Vec<u8>; 2],
    /// Bytes of `buf` already read (whole lines or messages), or where the
    /// next search resumes.
    pos: [usize; 2],
    /// Where the search for the next line end (or XMPP's `<failure`) resumes.
    scan: [usize; 2],
    /// Bytes read per direction (against [`MAX_PRELUDE`]; `buf` may hold fewer).
    read: [usize; 2],
    /// Where TLS starts in `buf[i]`, once known.
    start: [Option<usize>; 2],
    /// The client asked for the upgrade (`start[0]` is set).
    asked: bool,
    agreed: bool,
    handed: [bool; 2],
    /// The protocol was recognised (a greeting or request of its own seen).
    pub recognised: bool,
    /// Commands the client sent (SMTP, FTP, POP3), the upgrade included once asked.
    commands: u32,
    /// Final replies after the greeting.
    replies: u32,
    greeted: bool,
    /// `smtp`, `lmtp` or `ftp` for [`Kind::Reply220`], once the client's
    /// commands said.
    name220: Option<&'static str>,
    /// IMAP tag or LDAP message id of the upgrade request.
    tag: Vec<u8>,
    /// PostgreSQL: a GSSENCRequest waits for its answer.
    gss_pending: bool,
    /// MySQL: the greeting offered CLIENT_SSL. SOCKS5: the stage of the server's replies.
    offered: bool,
    stage: u8,
    /// `host:port` the proxy was asked to connect to (SOCKS, HTTP CONNECT).
    pub target: Option<String>,
}

impl Prelude {
    pub fn new(kind: Kind, server_port: u16) -> Self {
        Prelude {
            kind,
            server_port,
            buf: Default::default(),
            pos: [0; 2],
            scan: [0; 2],
            read: [0; 2],
            start: [None; 2],
            asked: false,
            agreed: false,
            handed: [false; 2],
            recognised: false,
            commands: 0,
            replies: 0,
            greeted: false,
            name220: None,
            tag: Vec::new(),
            gss_pending: false,
            offered: false,
            stage: 0,
            target: None,
        }
    }

    /// The `upgrade` name of the tls record.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Reply220 => self.name220.unwrap_or("smtp"),
            Kind::Imap => "imap",
            Kind::Pop3 => "pop3",
            Kind::Xmpp => "xmpp",
            Kind::Ldap => "ldap",
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
            Kind::Socks4 => "socks4",
            Kind::Socks5 => "socks5",
            Kind::HttpConnect => "http_connect",
        }
    }

    /// The flow's `service` (Zeek's names) while it stays plain.
    pub fn service(&self) -> &'static str {
        match self.kind {
            Kind::Reply220 => self.name220.unwrap_or(if self.server_port == 21 {
                "ftp"
            } else {
                "smtp"
            }),
            Kind::Postgres => "postgresql",
            Kind::Socks4 | Kind::Socks5 => "socks",
            Kind::HttpConnect => "http",
            _ => self.name(),
        }
    }

    /// Has direction `i` been handed to TLS (its bytes now go straight there)?
    pub fn passing(&self, i: usize) -> bool {
        self.handed[i]
    }

    /// The server agreed to the upgrade.
    pub fn upgraded(&self) -> bool {
        self.agreed
    }

    /// Bytes held (for `flow.memcap`).
    pub fn heap_bytes(&self) -> usize {
        self.buf.iter().map(Vec::capacity).sum::<usize>()
            + self.tag.capacity()
            + self.target.as_ref().map_or(0, String::capacity)
    }

    /// Reads direction `i`'s next bytes; `Err` when the flow will not turn
    /// to TLS. Then [`Prelude::take`] gives each direction's first TLS bytes.
    pub fn feed(&mut self, i: usize, data: &[u8]) -> Result<(), Stop> {
        let room = MAX_PRELUDE - self.read[i];
        let over = data.len() > room;
        let take = data.len().min(room);
        self.read[i] += take;
        self.buf[i].extend_from_slice(&data[..take]);
        self.step(i)?;
        self.compact(i);
        if over && !(self.agreed && self.start[i].is_some()) {
            return Err(Stop::Cap);
        }
        Ok(())
    }

    /// The prelude ended without TLS: the bytes held are no longer needed.
    pub fn free(&mut self) {
        self.buf = Default::default();
        self.tag = Vec::new();
    }

    /// Drops direction `i`'s lines or messages already read (the readers
    /// that keep no offsets into them: lines and LDAP), so a plain session
    /// holds its unfinished line only, not everything up to the cap.
    fn compact(&mut self, i: usize) {
        let at = self.pos[i];
        if at > 0
            && self.start[i].is_none()
            && matches!(
                self.kind,
                Kind::Reply220 | Kind::Imap | Kind::Pop3 | Kind::Ldap
            )
        {
            self.buf[i].drain(..at);
            self.pos[i] = 0;
            self.scan[i] = self.scan[i].saturating_sub(at);
        }
    }

    /// Direction `j`'s bytes from where TLS starts, once the upgrade is
    /// agreed (once per direction).
    pub fn take(&mut self, j: usize) -> Option<Vec<u8>> {
        let at = self.start[j].filter(|_| self.agreed && !self.handed[j])?;
        self.handed[j] = true;
        let rest = self.buf[j].get(at..).unwrap_or_default().to_vec();
        self.buf[j] = Vec::new();
        Some(rest)
    }

    fn step(&mut self, i: usize) -> Result<(), Stop> {
        if self.start[i].is_some() {
            return Ok(());
        }
        match (self.kind, i) {
            (Kind::Reply220 | Kind::Pop3 | Kind::Imap, 0) => self.command_lines(),
            (Kind::Reply220 | Kind::Pop3 | Kind::Imap, _) => self.reply_lines(),
            (Kind::Xmpp, _) => self.xmpp(i),
            (Kind::Ldap, _) => self.ldap(i),
            (Kind::Postgres, 0) => self.postgres_client(),
            (Kind::Postgres, _) => self.postgres_server(),
            (Kind::Mysql, 0) => self.mysql_client(),
            (Kind::Mysql, _) => self.mysql_server(),
            (Kind::Socks4, 0) => self.socks4_client(),
            (Kind::Socks4, _) => self.socks4_server(),
            (Kind::Socks5, 0) => self.socks5_client(),
            (Kind::Socks5, _) => self.socks5_server(),
            (Kind::HttpConnect, _) => self.http_connect(i),
        }
    }

    /// The next whole line of direction `i` (CRLF or LF cut off), consumed.
    fn line(&mut self, i: usize) -> Option<(usize, usize)> {
        let b = &self.buf[i];
        let from = self.pos[i];
        let at = self.scan[i].max(from);
        let Some(nl) = b.get(at..)?.iter().position(|c| *c == b'\n') else {
            self.scan[i] = b.len();
            return None;
        };
        let end = at + nl;
        self.pos[i] = end + 1;
        let end = if end > from && b[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        Some((from, end))
    }

    /// SMTP/LMTP/FTP, IMAP and POP3 commands, up to the upgrade request.
    fn command_lines(&mut self) -> Result<(), Stop> {
        while let Some((a, b)) = self.line(0) {
            let line = self.buf[0][a..b].to_ascii_uppercase();
            self.commands += 1;
            let upgrade = match self.kind {
                Kind::Imap => {
                    let mut words = line.splitn(2, |c| *c == b' ');
                    let tag = words.next().unwrap_or_default();
                    if words.next().map(<[u8]>::trim_ascii) == Some(b"STARTTLS") {
                        self.tag = tag
                            .get(..MAX_TAG.min(tag.len()))
                            .unwrap_or_default()
                            .to_vec();
                        true
                    } else {
                        false
                    }
                }
                Kind::Pop3 => line.trim_ascii() == b"STLS",
                _ => {
                    if line.starts_with(b"LHLO") {
                        self.name220 = Some("lmtp");
                    }
                    match line.trim_ascii() {
                        b"STARTTLS" => {
                            self.name220.get_or_insert("smtp");
                            true
                        }
                        b"AUTH TLS" | b"AUTH SSL" | b"AUTH TLS-C" => {
                            self.name220 = Some("ftp");
                            true
                        }
                        _ => false,
                    }
                }
            };
            if upgrade {
                self.asked = true;
                self.start[0] = Some(self.pos[0]);
                return Ok(());
            }
        }
        Ok(())
    }

    /// The server's replies: the greeting, then one final reply per command
    /// (IMAP: tagged lines); the one answering the upgrade decides.
    fn reply_lines(&mut self) -> Result<(), Stop> {
        while let Some((a, b)) = self.line(1) {
            let line = &self.buf[1][a..b];
            let (final_reply, agree) = match self.kind {
                Kind::Reply220 => {
                    let code = line.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit));
                    let Some(code) = code else {
                        if !self.greeted {
                            return Err(Stop::NotProtocol);
                        }
                        continue;
                    };
                    let want: &[u8] = if self.name220 == Some("ftp") {
                        b"234"
                    } else {
                        b"220"
                    };
                    (line.get(3) != Some(&b'-'), code == want)
                }
                Kind::Pop3 => {
                    if line.starts_with(b"+OK") {
                        (true, true)
                    } else if line.starts_with(b"-ERR") || line.starts_with(b"+ ") {
                        // `+ ` asks for the next SASL line (RFC 5034), which
                        // the client sends as a line of its own.
                        (true, false)
                    } else if !self.greeted {
                        return Err(Stop::NotProtocol);
                    } else {
                        (false, false)
                    }
                }
                _ => {
                    if !self.greeted {
                        if !line.starts_with(b"* ") {
                            return Err(Stop::NotProtocol);
                        }
                        self.greeted = true;
                        self.recognised = true;
                        continue;
                    }
                    if !self.asked || self.tag.is_empty() {
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let Some(rest) = upper
                        .strip_prefix(self.tag.as_slice())
                        .and_then(|r| r.strip_prefix(b" "))
                    else {
                        continue;
                    };
                    if rest.starts_with(b"OK") {
                        return self.agree(1);
                    }
                    return Err(Stop::Refused);
                }
            };
            if !final_reply {
                continue;
            }
            if !self.greeted {
                self.greeted = true;
                self.recognised = true;
                continue;
            }
            self.replies += 1;
            if self.asked && self.replies == self.commands {
                if agree {
                    return self.agree(1);
                }
                return Err(Stop::Refused);
            }
        }
        Ok(())
    }

    /// The server agreed: its TLS starts at `pos[i]`.
    fn agree(&mut self, i: usize) -> Result<(), Stop> {
        self.agreed = true;
        self.start[i] = Some(self.pos[i]);
        Ok(())
    }

    /// XMPP: the client's `<starttls .../>`, the server's `<proceed .../>`
    /// (or `<failure`).
    fn xmpp(&mut self, i: usize) -> Result<(), Stop> {
        let head = &self.buf[i][..self.buf[i].len().min(256)];
        if !self.recognised && contains(head, b"<stream:stream") {
            self.recognised = true;
        }
        if !self.recognised && head.len() == 256 {
            // Some other XML over TCP: an XMPP stream opens at once.
            return Err(Stop::NotProtocol);
        }
        if i == 0 {
            if let Some(end) = element_end(&self.buf[0], &mut self.pos[0], b"<starttls") {
                self.asked = true;
                self.start[0] = Some(end);
            }
            return Ok(());
        }
        if !self.asked {
            return Ok(());
        }
        self.scan[1] = self.scan[1].max(self.pos[1]);
        if find_from(&self.buf[1], &mut self.scan[1], b"<failure").is_some() {
            return Err(Stop::Refused);
        }
        if let Some(end) = element_end(&self.buf[1], &mut self.pos[1], b"<proceed") {
            self.agreed = true;
            self.start[1] = Some(end);
        }
        Ok(())
    }

    /// LDAP: whole BER messages; the client's StartTLS ExtendedRequest and
    /// the server's ExtendedResponse with the same message id.
    fn ldap(&mut self, i: usize) -> Result<(), Stop> {
        loop {
            let b = &self.buf[i];
            let from = self.pos[i];
            let Some(msg) = b.get(from..) else {
                return Ok(());
            };
            let Some(tlv) = ber(msg).map_err(|_| Stop::NotProtocol)? else {
                return Ok(());
            };
            let (tag, body, end) = tlv;
            if tag != 0x30 {
                return Err(Stop::NotProtocol);
            }
            let body = &msg[body..end];
            let Some((0x02, id_at, id_end)) = ber(body).ok().flatten() else {
                return Err(Stop::NotProtocol);
            };
            let id = &body[id_at..id_end];
            let Some((op, op_at, op_end)) = ber(&body[id_end..]).ok().flatten() else {
                return Err(Stop::NotProtocol);
            };
            let op_body = &body[id_end + op_at..id_end + op_end];
            self.recognised = true;
            self.pos[i] = from + end;
            if i == 0 && op == 0x77 && contains(op_body, LDAP_STARTTLS) {
                self.tag = id.to_vec();
                self.asked = true;
                self.start[0] = Some(self.pos[0]);
                return Ok(());
            }
            if i == 1 && op == 0x78 && self.asked && id == self.tag.as_slice() {
                return match ber(op_body) {
                    Ok(Some((0x0a, a, e))) if op_body[a..e] == [0] => self.agree(1),
                    _ => Err(Stop::Refused),
                };
            }
        }
    }

    fn postgres_client(&mut self) -> Result<(), Stop> {
        while let Some(req) = self.buf[0].get(self.pos[0]..self.pos[0] + 8) {
            if req == PG_GSS && !self.gss_pending && !self.recognised {
                self.gss_pending = true;
            } else if req == PG_SSL && !self.gss_pending {
                self.asked = true;
            } else {
                return Err(Stop::NotProtocol);
            }
            self.recognised = true;
            self.pos[0] += 8;
            if self.asked {
                self.start[0] = Some(self.pos[0]);
                return Ok(());
            }
        }
        Ok(())
    }

    fn postgres_server(&mut self) -> Result<(), Stop> {
        while let Some(&c) = self.buf[1].get(self.pos[1]) {
            self.pos[1] += 1;
            match c {
                b'N' if self.gss_pending => self.gss_pending = false,
                b'S' if self.asked => return self.agree(1),
                b'N' if self.asked => return Err(Stop::Refused),
                _ => return Err(Stop::NotProtocol),
            }
        }
        Ok(())
    }

    /// MySQL: the server's greeting (protocol 10) and its capability flags.
    fn mysql_server(&mut self) -> Result<(), Stop> {
        if self.greeted {
            // Bytes after the greeting before the client's answer: not an upgrade.
            return Err(Stop::NotProtocol);
        }
        let b = &self.buf[1];
        let Some(&[l0, l1, l2, _]) = b.first_chunk::<4>() else {
            return Ok(());
        };
        let len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
        let Some(p) = b.get(4..4 + len) else {
            return Ok(());
        };
        if p.first() != Some(&10) {
            return Err(Stop::NotProtocol);
        }
        let Some(nul) = p.iter().position(|c| *c == 0) else {
            return Err(Stop::NotProtocol);
        };
        // version NUL, thread id (4), auth data part 1 (8), filler (1), capabilities (2).
        let Some(caps) = p.get(nul + 14..nul + 16) else {
            return Err(Stop::NotProtocol);
        };
        self.offered = u32::from(u16::from_le_bytes([caps[0], caps[1]])) & MYSQL_CLIENT_SSL != 0;
        self.greeted = true;
        self.recognised = true;
        self.pos[1] = 4 + len;
        Ok(())
    }

    /// MySQL: the client's SSL request, 32 bytes of payload with CLIENT_SSL.
    fn mysql_client(&mut self) -> Result<(), Stop> {
        let b = &self.buf[0];
        let Some(&[l0, l1, l2, _]) = b.first_chunk::<4>() else {
            return Ok(());
        };
        let len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
        if len != 32 || !self.greeted {
            return Err(Stop::NotProtocol);
        }
        let Some(caps) = b.get(4..8) else {
            return Ok(());
        };
        if u32::from_le_bytes([caps[0], caps[1], caps[2], caps[3]]) & MYSQL_CLIENT_SSL == 0 {
            return Err(Stop::NotProtocol);
        }
        if b.len() < 36 {
            return Ok(());
        }
        if !self.offered {
            return Err(Stop::Refused);
        }
        self.asked = true;
        self.start[0] = Some(36);
        self.agreed = true;
        self.start[1] = Some(self.pos[1]);
        Ok(())
    }

    /// SOCKS4 and 4a CONNECT: VN 4, CD 1, port, address, user id NUL (4a:
    /// address 0.0.0.x and the host name NUL after the user id).
    fn socks4_client(&mut self) -> Result<(), Stop> {
        let b = &self.buf[0];
        let Some(h) = b.first_chunk::<8>() else {
            return Ok(());
        };
        if h[..2] != [4, 1] {
            return Err(Stop::NotProtocol);
        }
        let port = u16::from_be_bytes([h[2], h[3]]);
        // A user id or host name runs to its NUL, within 255 bytes each.
        let field = |from: usize| match b[from..].iter().take(256).position(|c| *c == 0) {
            Some(n) => Ok(Some(n)),
            None if b.len() - from >= 256 => Err(Stop::NotProtocol),
            None => Ok(None),
        };
        let Some(user_end) = field(8)?.map(|n| 8 + n + 1) else {
            return Ok(());
        };
        let (target, end) = if h[4..7] == [0, 0, 0] && h[7] != 0 {
            let Some(n) = field(user_end)? else {
                return Ok(());
            };
            (
                host_port(&b[user_end..user_end + n], port),
                user_end + n + 1,
            )
        } else {
            let ip = std::net::Ipv4Addr::new(h[4], h[5], h[6], h[7]);
            (format!("{ip}:{port}"), user_end)
        };
        self.recognised = true;
        self.target = Some(target);
        self.asked = true;
        self.start[0] = Some(end);
        Ok(())
    }

    fn socks4_server(&mut self) -> Result<(), Stop> {
        let Some(r) = self.buf[1].first_chunk::<8>() else {
            return Ok(());
        };
        if !self.asked || r[0] > 4 {
            return Err(Stop::NotProtocol);
        }
        self.pos[1] = 8;
        if r[1] == 0x5a {
            self.agree(1)
        } else {
            Err(Stop::Refused)
        }
    }

    /// SOCKS5: the method offer, an optional user/password sub-negotiation
    /// (RFC 1929, version 1), the CONNECT request.
    fn socks5_client(&mut self) -> Result<(), Stop> {
        loop {
            let b = &self.buf[0];
            let at = self.pos[0];
            let Some(rest) = b.get(at..).filter(|r| !r.is_empty()) else {
                return Ok(());
            };
            let need = match (at, rest) {
                (0, [5, n, ..]) => 2 + usize::from(*n),
                (0, _) => return Err(Stop::NotProtocol),
                (_, [1, ulen, ..]) => {
                    let plen_at = 2 + usize::from(*ulen);
                    let Some(plen) = rest.get(plen_at) else {
                        return Ok(());
                    };
                    plen_at + 1 + usize::from(*plen)
                }
                (_, [5, 1, 0, atyp, more @ ..]) => {
                    let (addr, len) = match atyp {
                        1 => (4, 4),
                        4 => (16, 16),
                        3 => match more.first() {
                            Some(n) => (usize::from(*n), usize::from(*n) + 1),
                            None => return Ok(()),
                        },
                        _ => return Err(Stop::NotProtocol),
                    };
                    let Some(a) = more.get(..len + 2) else {
                        return Ok(());
                    };
                    let port = u16::from_be_bytes([a[len], a[len + 1]]);
                    self.target = Some(match atyp {
                        1 => format!("{}:{port}", std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                        4 => {
                            let mut o = [0u8; 16];
                            o.copy_from_slice(&a[..16]);
                            format!("[{}]:{port}", std::net::Ipv6Addr::from(o))
                        }
                        _ => host_port(&a[len - addr..len], port),
                    });
                    self.asked = true;
                    self.pos[0] = at + 4 + len + 2;
                    self.start[0] = Some(self.pos[0]);
                    return Ok(());
                }
                (_, [1 | 5]) | (_, [5, 1]) | (_, [5, 1, 0]) => return Ok(()),
                _ => return Err(Stop::NotProtocol),
            };
            if rest.len() < need {
                return Ok(());
            }
            self.recognised = true;
            self.pos[0] = at + need;
        }
    }

    fn socks5_server(&mut self) -> Result<(), Stop> {
        loop {
            let at = self.pos[1];
            let Some(rest) = self.buf[1].get(at..).filter(|r| !r.is_empty()) else {
                return Ok(());
            };
            match (self.stage, rest) {
                // Method selection: none (0) or user/password (2).
                (0, [5, m, ..]) => {
                    match m {
                        0 => self.stage = 2,
                        2 => self.stage = 1,
                        0xff => return Err(Stop::Refused),
                        _ => return Err(Stop::NotProtocol),
                    }
                    self.pos[1] += 2;
                }
                (1, [1, status, ..]) => {
                    if *status != 0 {
                        return Err(Stop::Refused);
                    }
                    self.stage = 2;
                    self.pos[1] += 2;
                }
                (2, [5, rep, _, atyp, more @ ..]) if self.asked => {
                    let len = match atyp {
                        1 => 4,
                        4 => 16,
                        3 => match more.first() {
                            Some(n) => usize::from(*n) + 1,
                            None => return Ok(()),
                        },
                        _ => return Err(Stop::NotProtocol),
                    };
                    if more.len() < len + 2 {
                        return Ok(());
                    }
                    if *rep != 0 {
                        return Err(Stop::Refused);
                    }
                    self.pos[1] += 4 + len + 2;
                    return self.agree(1);
                }
                (_, [5] | [5, _] | [5, _, _] | [1]) => return Ok(()),
                (2, [5, ..]) => return Err(Stop::NotProtocol),
                _ => return Err(Stop::NotProtocol),
            }
        }
    }

    /// HTTP CONNECT: the request head (`CONNECT host:port HTTP/1.x`) and
    /// the response head, each up to its blank line; a 2xx opens the tunnel.
    fn http_connect(&mut self, i: usize) -> Result<(), Stop> {
        let Some(at) = find_from(&self.buf[i], &mut self.pos[i], b"\r\n\r\n") else {
            return Ok(());
        };
        let end = at + 4;
        let b = &self.buf[i];
        let line = b.split(|c| *c == b'\r').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut words = line.split(' ');
        if i == 0 {
            match (words.next(), words.next()) {
                (Some("CONNECT"), Some(target)) => {
                    self.target = Some(target.chars().take(MAX_TARGET).collect())
                }
                _ => return Err(Stop::NotProtocol),
            }
            self.recognised = true;
            self.asked = true;
            self.start[0] = Some(end);
            return Ok(());
        }
        let status = words.nth(1).and_then(|w| w.parse::<u16>().ok());
        if !self.asked || !status.is_some_and(|s| (200..300).contains(&s)) {
            return Err(Stop::Refused);
        }
        self.agreed = true;
        self.start[1] = Some(end);
        Ok(())
    }
}

/// `host:port` from a name on the wire (lossy UTF-8, bounded).
fn host_port(host: &[u8], port: u16) -> String {
    let host: String = String::from_utf8_lossy(host)
        .chars()
        .take(MAX_TARGET)
        .collect();
    format!("{host}:{port}")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find_from(hay, &mut 0, needle).is_some()
}

/// Where `needle` starts in `hay` at or after `*pos`; when absent, `*pos`
/// moves to where a later search (after more bytes) must resume, so the
/// bytes are searched once.
fn find_from(hay: &[u8], pos: &mut usize, needle: &[u8]) -> Option<usize> {
    let from = (*pos).min(hay.len());
    match memchr::memmem::find(&hay[from..], needle) {
        Some(n) => Some(from + n),
        None => {
            *pos = hay.len().saturating_sub(needle.len() - 1).max(from);
            None
        }
    }
}

/// The end of the XML element that starts with `open` (`<starttls`,
/// `<proceed`): after its `/>`, or after its closing tag.
fn element_end(hay: &[u8], pos: &mut usize, open: &[u8]) -> Option<usize> {
    let start = find_from(hay, pos, open)?;
    // `*pos` stays at the element's start while it is incomplete; an
    // element is short, so only its first KiB is searched again.
    let hay = &hay[..hay.len().min(start + 1024)];
    let gt = start + hay[start..].iter().position(|c| *c == b'>')?;
    if hay[gt - 1] == b'/' {
        *pos = gt + 1;
        return Some(gt + 1);
    }
    let mut close = gt;
    let name = &open[1..];
    loop {
        let c = find_from(hay, &mut close, b"</")?;
        if hay[c + 2..].starts_with(name) {
            let gt = c + hay[c..].iter().position(|b| *b == b'>')?;
            *pos = gt + 1;
            return Some(gt + 1);
        }
        close = c + 2;
    }
}

/// One BER TLV at the start of `b` (X.690 §8.1: a one-byte tag, a short or
/// long definite length of at most 4 bytes): `(tag, body start, end)`;
/// `Ok(None)` when more bytes are needed, `Err` when it cannot be LDAP.
fn ber(b: &[u8]) -> Result<Option<(u8, usize, usize)>, ()> {
    let (Some(&tag), Some(&l)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if tag & 0x1f == 0x1f {
        return Err(());
    }
    let (len, at) = if l < 0x80 {
        (usize::from(l), 2)
    } else {
        let n = usize::from(l & 0x7f);
        if n == 0 || n > 4 {
            return Err(());
        }
        let Some(bytes) = b.get(2..2 + n) else {
            return Ok(None);
        };
        (
            bytes.iter().fold(0usize, |a, c| a << 8 | usize::from(*c)),
            2 + n,
        )
    };
    if len > MAX_PRELUDE {
        return Err(());
    }
    Ok((b.len() >= at + len).then_some((tag, at, at + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the exchange (direction, bytes) and returns where it ended:
    /// each direction's TLS bytes, or the stop.
    fn run(kind: Kind, steps: &[(usize, &[u8])]) -> Result<[Vec<u8>; 2], Stop> {
        let mut p = Prelude::new(kind, 0);
        let mut out: [Vec<u8>; 2] = Default::default();
        for (i, b) in steps {
            if p.passing(*i) {
                out[*i].extend_from_slice(b);
                continue;
            }
            p.feed(*i, b)?;
            for (j, o) in out.iter_mut().enumerate() {
                if let Some(t) = p.take(j) {
                    o.extend_from_slice(&t);
                }
            }
        }
        Ok(out)
    }

    const HELLO: &[u8] = b"\x16\x03\x01\x00\x05hello";
    const SHELLO: &[u8] = b"\x16\x03\x03\x00\x05shell";

    #[test]
    fn smtp_starttls_after_pipelined_ehlo() {
        let r = run(
            Kind::Reply220,
            &[
                (1, b"220 mx ESMTP\r\n"),
                (0, b"EHLO c\r\nSTARTTLS\r\n"),
                (1, b"250-mx\r\n250 STARTTLS\r\n"),
                (1, b"220 2.0.0 Ready\r\n"),
                (0, HELLO),
                (1, SHELLO),
            ],
        );
        assert_eq!(r, Ok([HELLO.to_vec(), SHELLO.to_vec()]));
    }

    #[test]
    fn smtp_refusal_is_no_tls() {
        let r = run(
            Kind::Reply220,
            &[
                (1, b"220 mx ESMTP\r\n"),
                (0, b"EHLO c\r\n"),
                (1, b"250 mx\r\n"),
                (0, b"STARTTLS\r\n"),
                (1, b"454 4.7.0 TLS not available\r\n"),
            ],
        );
        assert_eq!(r, Err(Stop::Refused));
    }

    #[test]
    fn imap_tagged_ok_and_pop3_stls() {
        let imap = run(
            Kind::Imap,
            &[
                (1, b"* OK ready\r\n"),
                (0, b"a1 STARTTLS\r\n"),
                (1, b"* BYE no\r\na1 OK Begin TLS\r\n"),
                (0, HELLO),
            ],
        );
        assert_eq!(imap, Ok([HELLO.to_vec(), Vec::new()]));
        let pop = run(
            Kind::Pop3,
            &[
                (1, b"+OK hi\r\n"),
                (0, b"CAPA\r\n"),
                (1, b"+OK\r\nSTLS\r\n.\r\n"),
                (0, b"STLS\r\n"),
                (1, b"-ERR no\r\n"),
            ],
        );
        assert_eq!(pop, Err(Stop::Refused));
    }

    /// A SASL exchange before STLS: `+ ` answers the AUTH line, `+OK` the
    /// client's response line, so the count still pairs STLS with its reply.
    #[test]
    fn pop3_sasl_before_stls() {
        let pop = run(
            Kind::Pop3,
            &[
                (1, b"+OK hi\r\n"),
                (0, b"AUTH PLAIN\r\n"),
                (1, b"+ \r\n"),
                (0, b"AGFAYg==\r\n"),
                (1, b"+OK in\r\n"),
                (0, b"STLS\r\n"),
                (1, b"+OK go\r\n"),
                (0, HELLO),
            ],
        );
        assert_eq!(pop, Ok([HELLO.to_vec(), Vec::new()]));
    }

    #[test]
    fn postgres_and_mysql() {
        let pg = run(Kind::Postgres, &[(0, &PG_SSL), (1, b"S"), (0, HELLO)]);
        assert_eq!(pg, Ok([HELLO.to_vec(), Vec::new()]));
        assert_eq!(
            run(Kind::Postgres, &[(0, &PG_SSL), (1, b"N")]),
            Err(Stop::Refused)
        );
        // A 5.5-style greeting: version "5.5.5\0", id, 8 bytes, filler, caps 0xffff.
        let mut g = vec![10];
        g.extend_from_slice(b"5.5.5\0");
        g.extend_from_slice(&[1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0xff, 0xff]);
        let mut greet = vec![g.len() as u8, 0, 0, 0];
        greet.extend_from_slice(&g);
        assert_eq!(Kind::probe(&greet, 1, 40000), Some(Kind::Mysql));
        let mut req = vec![32, 0, 0, 1, 0, 0x08, 0, 0];
        req.resize(36, 0);
        req.extend_from_slice(HELLO);
        let my = run(Kind::Mysql, &[(1, &greet), (0, &req), (1, SHELLO)]);
        assert_eq!(my, Ok([HELLO.to_vec(), SHELLO.to_vec()]));
    }

    #[test]
    fn socks_targets() {
        let mut p = Prelude::new(Kind::Socks4, 1080);
        p.feed(0, b"\x04\x01\x01\xbb\x00\x00\x00\x01u\x00example.org\x00")
            .unwrap();
        p.feed(1, &[0, 0x5a, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(p.target.as_deref(), Some("example.org:443"));
        assert!(p.take(0).is_some() && p.take(1).is_some());
        let s5 = run(
            Kind::Socks5,
            &[
                (0, b"\x05\x02\x00\x02"),
                (1, b"\x05\x02"),
                (0, b"\x01\x01u\x01p"),
                (1, b"\x01\x00"),
                (0, b"\x05\x01\x00\x03\x0bexample.org\x01\xbb"),
                (1, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x01\xbb"),
                (0, HELLO),
            ],
        );
        assert_eq!(s5, Ok([HELLO.to_vec(), Vec::new()]));
        let refused = run(
            Kind::Socks5,
            &[
                (0, b"\x05\x01\x00"),
                (1, b"\x05\x00"),
                (0, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x01\xbb"),
                (1, b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"),
            ],
        );
        assert_eq!(refused, Err(Stop::Refused));
    }

    #[test]
    fn xmpp_and_ldap() {
        let x = run(
            Kind::Xmpp,
            &[
                (0, b"<?xml version='1.0'?><stream:stream to='a'>"),
                (1, b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"),
                (0, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                (1, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                (0, HELLO),
            ],
        );
        assert_eq!(x, Ok([HELLO.to_vec(), Vec::new()]));
        // openssl s_client's request and slapd's answer (message id 1).
        let mut req = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
        req.extend_from_slice(LDAP_STARTTLS);
        let resp = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(Kind::probe(&req, 0, 40000), Some(Kind::Ldap));
        let l = run(Kind::Ldap, &[(0, &req), (1, &resp), (0, HELLO)]);
        assert_eq!(l, Ok([HELLO.to_vec(), Vec::new()]));
        let mut no = resp;
        no[9] = 2;
        assert_eq!(run(Kind::Ldap, &[(0, &req), (1, &no)]), Err(Stop::Refused));
    }

    /// A plain session holds only its unfinished line, however long it runs
    /// before the cap.
    #[test]
    fn plain_smtp_holds_one_line() {
        let mut p = Prelude::new(Kind::Reply220, 25);
        p.feed(1, b"220 mx\r\n").unwrap();
        for _ in 0..100 {
            p.feed(0, b"RCPT TO:<a@b.test>\r\nDA").unwrap();
            p.feed(0, b"TA\r\n").unwrap();
            assert!(p.buf[0].len() < 32 && p.buf[1].is_empty());
        }
        assert!(p.recognised && !p.upgraded());
    }

    /// A banner that never ends, or a server that never agrees, stops at
    /// the cap, a byte at a time in linear time.
    #[test]
    fn endless_banner_stops_at_the_cap() {
        let mut p = Prelude::new(Kind::Reply220, 25);
        p.feed(1, b"220-").unwrap();
        let mut stop = Ok(());
        for _ in 0..MAX_PRELUDE + 10 {
            stop = p.feed(1, b"x");
            if stop.is_err() {
                break;
            }
        }
        assert_eq!(stop, Err(Stop::Cap));
        assert!(p.heap_bytes() <= MAX_PRELUDE + 64);
    }
}
