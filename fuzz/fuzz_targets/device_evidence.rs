//! Any bytes as DHCPv4, DHCPv6, ARP and ICMPv6 (NDP) payloads, then the
//! evidence into the correlator's device history: never a panic, and the
//! tables stay within their caps.
#![no_main]
use blindspot::app::{dhcp, dhcp6, evidence};
use blindspot::correlate::devices::{DeviceInputs, DeviceLimits, Devices};
use blindspot::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let ts = Timestamp::from_secs(1);
    if let Some(d) = dhcp::parse(data) {
        evidence::from_dhcp4(&d, ts, &mut out);
    }
    if let Some(d) = dhcp6::parse(data) {
        evidence::from_dhcp6(&d, ts, Some([2, 0, 0, 0, 0, 1]), &mut out);
    }
    evidence::from_arp(data, ts, &mut out);
    evidence::from_ndp(data, "fe80::1".parse().unwrap(), ts, &mut out);
    let limits = DeviceLimits { max_ips: 4, max_bindings_per_ip: 2, max_macs: 4 };
    let mut devices = Devices::new(limits, DeviceInputs::default());
    for e in &out {
        let _ = devices.apply(e);
    }
});
