//! dnsmasq's lease file (`dnsmasq.leases`).

use super::*;

pub(super) fn parse(text: &str, out: &mut Out, errs: &mut Errors<'_>) {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("duid ") {
            continue;
        }
        if let Err(m) = entry(line, out) {
            errs.push(i + 1, m);
        }
    }
}

fn entry(line: &str, out: &mut Out) -> Result<(), String> {
    let mut it = line.split_whitespace();
    let f: Vec<&str> = it.by_ref().take(5).collect();
    let extra = it.count();
    if f.len() != 5 || extra > 0 {
        return Err(format!(
            "{} fields, expected 5: `EXPIRY MAC IP HOSTNAME CLIENT-ID` (DHCPv4) or `EXPIRY \
             IAID IPV6 HOSTNAME DUID` (DHCPv6)",
            f.len() + extra
        ));
    }
    let expiry = f[0]
        .parse::<u64>()
        .map_err(|_| format!("expiry {}: expected seconds since the epoch", shown(f[0])))?;
    let ip: IpAddr = f[2]
        .parse()
        .map_err(|_| format!("address {}: expected an IPv4 or IPv6 address", shown(f[2])))?;
    let hostname = if f[3] == "*" { None } else { host(f[3]) };
    let end = (expiry != 0).then(|| Timestamp::from_secs(expiry));
    let (mac, client_id) = match ip {
        IpAddr::V4(_) => {
            let mac = hwaddr(f[1])?;
            let id = match f[4] {
                "*" => None,
                s => Some(hex(&colon_hex(s).ok_or_else(|| {
                    format!(
                        "client-id {}: expected colon-separated hex octets or `*`",
                        shown(s)
                    )
                })?)),
            };
            (mac, id)
        }
        IpAddr::V6(_) => {
            let iaid = f[1].strip_prefix('T').unwrap_or(f[1]);
            if iaid.parse::<u32>().is_err() {
                return Err(format!(
                    "IAID {}: expected a number (DHCPv6 lines are `EXPIRY IAID IPV6 HOSTNAME \
                     DUID`)",
                    shown(f[1])
                ));
            }
            let duid = colon_hex(f[4]).ok_or_else(|| {
                format!("DUID {}: expected colon-separated hex octets", shown(f[4]))
            })?;
            (duid_mac(&duid), Some(hex(&duid)))
        }
    };
    out.add(Lease {
        ip,
        mac,
        start: None,
        end,
        hostname,
        client_id,
        source: "dnsmasq",
    });
    Ok(())
}

/// dnsmasq writes an Ethernet address as `aa:bb:cc:dd:ee:ff` and any
/// other (or an empty one) as `TT-aa:bb:…` with the hardware type first.
fn hwaddr(s: &str) -> Result<Option<[u8; 6]>, String> {
    let bad = || {
        format!(
            "MAC {}: expected a MAC address like 02:00:5e:10:00:01",
            shown(s)
        )
    };
    let b = s.as_bytes();
    if b.len() >= 3 && b[2] == b'-' && !s[3..].contains('-') {
        let ty = u8::from_str_radix(&s[..2], 16).map_err(|_| bad())?;
        let rest = &s[3..];
        if !rest.is_empty() && colon_hex(rest).is_none() {
            return Err(bad());
        }
        return Ok(if ty == 1 { parse_mac(rest) } else { None });
    }
    if !s.contains(':') {
        return Err(bad());
    }
    parse_mac(s).map(Some).ok_or_else(bad)
}
