//! Kea memfile CSV (`kea-leases4.csv`, `kea-leases6.csv`).

use super::*;

/// Kea's infinite lifetime.
const INFINITE: u64 = 0xffff_ffff;

/// Undoes Kea's `&#xHH` escapes (commas and other separators in text).
fn unescape(s: &str) -> String {
    if !s.contains("&#x") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("&#x") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let digits = after
            .bytes()
            .take(2)
            .take_while(u8::is_ascii_hexdigit)
            .count();
        match u8::from_str_radix(&after[..digits], 16) {
            Ok(c) if digits == 2 && c.is_ascii() => {
                out.push(c as char);
                rest = &after[2..];
            }
            _ => {
                out.push_str("&#x");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

struct Cols {
    n: usize,
    address: usize,
    hwaddr: Option<usize>,
    client_id: Option<usize>,
    duid: Option<usize>,
    valid: usize,
    expire: usize,
    hostname: Option<usize>,
    state: Option<usize>,
    lease_type: Option<usize>,
}

pub(super) fn parse(
    text: &str,
    v6: bool,
    out: &mut Out,
    errs: &mut Errors<'_>,
) -> Result<(), LoadError> {
    let mut lines = text.lines().enumerate();
    // the header is the first line that is not blank (sniff saw it)
    let (hline, header) = loop {
        match lines.next() {
            Some((i, l)) if !l.trim().is_empty() => break (i + 1, l.trim()),
            Some(_) => continue,
            None => return Ok(()),
        }
    };
    let names: Vec<&str> = header.split(',').collect();
    let col = |n: &str| names.iter().position(|h| h.trim() == n);
    let need = |n: &str| {
        col(n).ok_or_else(|| LoadError {
            file: errs.file.to_string(),
            line: Some(hline),
            message: format!(
                "Kea {} lease file header has no `{n}` column (expected `{}`)",
                if v6 { "DHCPv6" } else { "DHCPv4" },
                if v6 {
                    "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,…"
                } else {
                    "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,…"
                }
            ),
        })
    };
    let c = Cols {
        n: names.len(),
        address: need("address")?,
        hwaddr: if v6 {
            col("hwaddr")
        } else {
            Some(need("hwaddr")?)
        },
        client_id: if v6 { None } else { col("client_id") },
        duid: if v6 { Some(need("duid")?) } else { None },
        valid: need("valid_lifetime")?,
        expire: need("expire")?,
        hostname: col("hostname"),
        state: col("state"),
        lease_type: if v6 { col("lease_type") } else { None },
    };
    for (i, raw) in lines {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Err(m) = row(line, v6, &c, out) {
            errs.push(i + 1, m);
        }
    }
    Ok(())
}

fn row(line: &str, v6: bool, c: &Cols, out: &mut Out) -> Result<(), String> {
    // a hostile line may have millions of commas: count before splitting
    let n = line.bytes().filter(|&b| b == b',').count() + 1;
    if n != c.n {
        return Err(format!(
            "{n} columns, expected {} as in the header (Kea writes commas inside a value as \
             `&#x2c`)",
            c.n
        ));
    }
    let f: Vec<&str> = line.split(',').collect();
    let addr = f[c.address];
    let ip: IpAddr = if v6 {
        addr.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        addr.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| {
        format!(
            "address {}: expected an {} address",
            shown(addr),
            if v6 { "IPv6" } else { "IPv4" }
        )
    })?;
    let num = |i: usize, what: &str| -> Result<u64, String> {
        f[i].parse::<u64>()
            .map_err(|_| format!("{what} {}: expected a whole number", shown(f[i])))
    };
    let valid = num(c.valid, "valid_lifetime")?;
    let expire = num(c.expire, "expire")?;
    let state = match c.state {
        Some(i) if !f[i].is_empty() => num(i, "state")?,
        _ => 0,
    };
    if let Some(i) = c.lease_type {
        match f[i] {
            "0" | "1" | "" => {}
            "2" => return Ok(()), // a delegated prefix, not an address
            t => {
                return Err(format!(
                    "lease_type {}: expected 0 (address), 1 (temporary) or 2 (prefix)",
                    shown(t)
                ));
            }
        }
    }
    let hw = match c.hwaddr.map(|i| f[i]) {
        None | Some("") => None,
        Some(h) => Some(parse_mac(h).filter(|_| h.contains(':')).ok_or_else(|| {
            format!(
                "hwaddr {}: expected a MAC address like 02:00:5e:10:00:01",
                shown(h)
            )
        })?),
    };
    let id_col = if v6 { c.duid } else { c.client_id };
    let id_bytes = match id_col.map(|i| f[i]) {
        None | Some("") => None,
        Some(s) => Some(colon_hex(s).ok_or_else(|| {
            format!(
                "{} {}: expected colon-separated hex octets",
                if v6 { "duid" } else { "client_id" },
                shown(s)
            )
        })?),
    };
    let mac = hw.or_else(|| {
        if v6 {
            id_bytes.as_deref().and_then(duid_mac)
        } else {
            None
        }
    });
    let client_id = id_bytes.map(|b| hex(&b));
    if valid == 0 {
        out.close(
            ip,
            mac,
            client_id.as_deref(),
            Timestamp::from_secs(expire),
            false,
        );
        return Ok(());
    }
    match state {
        0 => {}
        1 => return Ok(()),
        2 | 3 if mac.is_none() && client_id.is_none() => return Ok(()),
        2 | 3 => {}
        s => {
            return Err(format!(
                "state {s}: expected 0 (assigned), 1 (declined), 2 (expired-reclaimed) or 3 \
                 (released)"
            ));
        }
    }
    let start = expire.checked_sub(valid).ok_or_else(|| {
        format!("expire {expire} is before valid_lifetime {valid} seconds after the epoch")
    })?;
    let hostname = c.hostname.and_then(|i| host(&unescape(f[i])));
    out.add(Lease {
        ip,
        mac,
        start: Some(Timestamp::from_secs(start)),
        end: (valid != INFINITE).then(|| Timestamp::from_secs(expire)),
        hostname,
        client_id,
        source: "kea",
    });
    Ok(())
}

#[cfg(test)]
#[test]
fn unescapes_kea_text() {
    assert_eq!(unescape("a&#x2cb"), "a,b");
    assert_eq!(unescape("&#x2c&#x2c"), ",,");
    assert_eq!(unescape("a&#x"), "a&#x");
    assert_eq!(unescape("a&#xzz"), "a&#xzz");
    assert_eq!(unescape("a&#x2"), "a&#x2");
    assert_eq!(unescape("plain"), "plain");
}
