//! MDM inventory: blindspot's own JSON shape, a Jamf Pro mobile-device
//! export and a Microsoft Intune `managedDevices` export.
//!
//! # How the shape is told
//!
//! The file is one JSON document (a UTF-8 byte order mark is allowed). Its
//! top level decides:
//!
//! | top level                                   | shape |
//! |---------------------------------------------|-------|
//! | object with `devices`                       | blindspot's own |
//! | object with `results`                       | Jamf Pro API `GET /api/v2/mobile-devices/detail` |
//! | object with `mobile_device`                 | Jamf Pro Classic API `GET /JSSResource/mobiledevices/id/{id}` |
//! | object with `mobile_devices`                | Jamf Pro Classic API `GET /JSSResource/mobiledevices` (the short list) |
//! | object with `value`                         | Microsoft Graph `GET /deviceManagement/managedDevices` (Intune) |
//! | array                                       | its first object decides: `mobile_device`, `general`, `hardware` or `serial_number` → Jamf; `deviceName`, `wiFiMacAddress`, `managedDeviceOwnerType` or `operatingSystem` (any case) → Intune |
//!
//! Anything else, and text that is not JSON, is an `Err` naming the shapes
//! accepted.
//!
//! # Field sources
//!
//! - **Jamf Pro API**: `MobileDeviceInventory` as returned in `results[]` by
//!   `GET /api/v2/mobile-devices/detail` (Jamf Pro 11.x schema, as published
//!   in the ruby-jss `Jamf::OAPISchemas` classes generated from a Jamf Pro
//!   11.6.1 server and in deploymenttheory/go-api-sdk-jamfpro
//!   `jamfproapi_mobile_devices.go`): `hardware.serialNumber`,
//!   `hardware.wifiMacAddress`, `hardware.modelIdentifier` (else
//!   `hardware.model`), `general.udid`, `general.displayName`,
//!   `general.osVersion` with `deviceType` (`ios`, `tvos`, `watchos`,
//!   `visionos`), `general.supervised`, `general.managed`,
//!   `general.deviceOwnershipType` (`Institutional`, `PersonalDeviceProfile`,
//!   `UserEnrollment`, `AccountDrivenUserEnrollment`,
//!   `AccountDrivenDeviceEnrollment`), `applications[].identifier`, `.name`,
//!   `.shortVersion` (else `.version`). The sections come only when asked
//!   for (`section=GENERAL&section=HARDWARE&section=APPLICATIONS`).
//! - **Jamf Pro Classic API**: `mobile_device` of
//!   `GET /JSSResource/mobiledevices/id/{id}` in JSON (the Classic API
//!   reference example, and go-api-sdk-jamfpro `classicapi_mobile_devices.go`):
//!   `general.serial_number`, `.udid`, `.display_name` (else `.device_name`,
//!   `.name`), `.model_identifier` (else `.model`), `.os_type` +
//!   `.os_version`, `.supervised`, `.managed`, `.device_ownership_level`,
//!   `.wifi_mac_address`; `applications[].identifier`, `.application_name`,
//!   `.application_short_version` (else `.application_version`). The list
//!   endpoint's items carry the same snake_case names without `general`.
//! - **Intune**: the Microsoft Graph v1.0 `managedDevice` resource
//!   (learn.microsoft.com/graph/api/resources/intune-devices-manageddevice):
//!   `serialNumber`, `udid`, `deviceName`, `model`, `operatingSystem` +
//!   `osVersion`, `isSupervised`, `managedDeviceOwnerType` (`company` →
//!   `corporate`, `personal`; the beta `ownerType` as a fallback),
//!   `wiFiMacAddress` (the beta `hardwareInformation.wifiMac` as a fallback),
//!   `managementAgent` (managed when it names MDM: `mdm`, `easMdm`,
//!   `configurationManagerClientMdm`, ...; the beta `managementState ==
//!   "managed"` when there is no agent). Keys are matched in any case, so
//!   `Get-MgDeviceManagementManagedDevice | ConvertTo-Json` output (PascalCase)
//!   loads too. `managedDevices` carries no per-device app list (that is the
//!   separate `detectedApps` relation), so Intune devices have no apps.
//!   Only the page in the file is read: follow `@odata.nextLink` when
//!   exporting.
//!
//! Empty strings and the all-zero MAC mean "not known". Jamf and Intune do
//! not export MDM-set associated domains, so those apps have none.
//!
//! # Errors
//!
//! A device is skipped, with a [`LoadError`] at the line where it starts,
//! when it has none of serial, UDID and Wi-Fi MAC, when its MAC is not a MAC,
//! when a field has the wrong JSON type, or (blindspot's shape only) when it
//! has a key the shape does not know. A vendor app without a bundle ID is
//! skipped on its own, with an error at its device's line.

use super::jsondoc::{self, Doc, Root, kind, nonempty, shown, text};
use super::leases::Errors;
use super::{LoadError, Loaded, parse_mac, read_text};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::ops::Range;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ManagedApp {
    pub bundle_id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Associated domains set by MDM (ManagedApplicationAttributes).
    pub associated_domains: Vec<String>,
}

/// (serde: fleet mode sends it to `correlate`, without its apps, which
/// `correlate` takes from its own inventory, and with `source` beside it;
/// `fleet/wire.rs`.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdmDevice {
    pub serial: Option<String>,
    pub udid: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    /// e.g. `iOS 17.5.1`.
    pub os: Option<String>,
    pub supervised: Option<bool>,
    pub managed: Option<bool>,
    /// `corporate`, `personal` or as the MDM says.
    pub ownership: Option<String>,
    pub wifi_mac: Option<[u8; 6]>,
    #[serde(skip)]
    pub apps: Vec<ManagedApp>,
    /// `"blindspot"`, `"jamf"` or `"intune"`.
    #[serde(skip)]
    pub source: &'static str,
}

const SHAPES: &str = "accepted: blindspot's {\"devices\": [...]}; \
    Jamf Pro API GET /api/v2/mobile-devices/detail {\"results\": [...]}; \
    Jamf Pro Classic API {\"mobile_device\": {...}} or {\"mobile_devices\": [...]}; \
    Microsoft Graph (Intune) GET /deviceManagement/managedDevices {\"value\": [...]}; \
    or a JSON array of Jamf or Intune device objects";

const MAC_FORMS: &str = "aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Blindspot,
    JamfPro,
    JamfClassic,
    Intune,
}

pub fn load(path: &Path) -> Result<Loaded<MdmDevice>, LoadError> {
    let text = read_text(path)?;
    parse_str(&text, &path.display().to_string())
}

/// Parses the text of the file; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Loaded<MdmDevice>, LoadError> {
    jsondoc::load::<Mdm>(text, file)
}

/// The device documents blindspot reads, for [`jsondoc::load`].
struct Mdm;

impl jsondoc::DocKind for Mdm {
    type Shape = Shape;
    type Item = MdmDevice;
    const SHAPES: &'static str = SHAPES;
    const NOUN: &'static str = "device";
    const WHAT: &'static str = "an MDM inventory";

    fn sniff(doc: &Doc<'_>, errs: &mut Errors) -> jsondoc::Sniffed<Shape> {
        Ok(Some(match &doc.root {
            Root::Object(members) => {
                // The first of these keys present decides.
                let sniffed = [
                    ("devices", Shape::Blindspot),
                    ("results", Shape::JamfPro),
                    ("mobile_device", Shape::JamfClassic),
                    ("mobile_devices", Shape::JamfClassic),
                    ("value", Shape::Intune),
                ]
                .into_iter()
                .find_map(|(key, shape)| jsondoc::find(members, key).map(|m| (key, shape, m)));
                let Some((key, shape, member)) = sniffed else {
                    return Err((
                        Some(1),
                        format!(
                            "not an MDM inventory: no devices, results, mobile_device, mobile_devices or value key at the top; {SHAPES}"
                        ),
                    ));
                };
                if shape == Shape::Blindspot {
                    for m in members.iter().filter(|m| m.key != "devices") {
                        errs.unknown_key(doc.line(m.key_at), "the top level", &m.key);
                    }
                }
                let entries = if key == "mobile_device" {
                    // One device: the whole document is the entry.
                    vec![doc_range(doc)]
                } else {
                    array_at(doc, member.value.clone())
                        .map_err(|m| (Some(doc.line(member.value.start)), format!("{key}: {m}")))?
                };
                (shape, entries)
            }
            Root::Array(elements) => match sniff_array(doc, elements) {
                Some(shape) => (shape, elements.clone()),
                None => {
                    return Err((
                        Some(1),
                        format!(
                            "an array, but its first object is neither a Jamf nor an Intune device; {SHAPES}"
                        ),
                    ));
                }
            },
            // Refused by `jsondoc::load` before it asks.
            Root::Scalar => return Ok(None),
        }))
    }

    fn entry(
        doc: &Doc<'_>,
        shape: Shape,
        range: Range<usize>,
        errs: &mut Errors,
    ) -> Result<(MdmDevice, Vec<String>), String> {
        match shape {
            Shape::Blindspot => own_device(doc, range, errs),
            Shape::JamfPro => doc.parse::<Value>(range).and_then(|v| jamf_pro(&v)),
            Shape::JamfClassic => doc.parse::<Value>(range).and_then(|v| jamf_classic(&v)),
            Shape::Intune => doc.parse::<Value>(range).and_then(|v| intune(&v)),
        }
    }
}

/// The whole document as one range (after the byte order mark).
fn doc_range(doc: &Doc<'_>) -> Range<usize> {
    let start = jsondoc::skip_ws(doc.text.as_bytes(), 0);
    start..doc.text.len()
}

/// The elements of the array at `range`, or what the value is instead.
fn array_at(doc: &Doc<'_>, range: Range<usize>) -> Result<Vec<Range<usize>>, String> {
    match doc.text.as_bytes().get(range.start) {
        Some(b'[') => jsondoc::elements(doc.text, range.start)
            .ok_or_else(|| "could not locate the array elements".to_string()),
        Some(b'{') => Err("is an object, expected an array".into()),
        _ => Err("is not an array".into()),
    }
}

/// Which vendor a top-level array of devices comes from, by its first object.
fn sniff_array(doc: &Doc<'_>, elements: &[Range<usize>]) -> Option<Shape> {
    let first = elements
        .iter()
        .find(|r| doc.text.as_bytes().get(r.start) == Some(&b'{'))?;
    let v: Value = doc.parse(first.clone()).ok()?;
    let o = v.as_object()?;
    if o.contains_key("general") || o.contains_key("hardware") || o.contains_key("mobileDeviceId") {
        Some(Shape::JamfPro)
    } else if o.contains_key("mobile_device") || o.contains_key("serial_number") {
        Some(Shape::JamfClassic)
    } else if [
        "deviceName",
        "wiFiMacAddress",
        "managedDeviceOwnerType",
        "operatingSystem",
    ]
    .iter()
    .any(|k| get_ci(o, k).is_some())
    {
        Some(Shape::Intune)
    } else {
        None
    }
}

// ---- blindspot's own shape ------------------------------------------------

/// Keys not in the shape: warned about once per file, then ignored.
type Other = std::collections::BTreeMap<String, serde::de::IgnoredAny>;

#[derive(Deserialize)]
struct OwnDevice {
    serial: Option<String>,
    udid: Option<String>,
    name: Option<String>,
    model: Option<String>,
    os: Option<String>,
    supervised: Option<bool>,
    managed: Option<bool>,
    ownership: Option<String>,
    wifi_mac: Option<String>,
    #[serde(default, alias = "managed_apps")]
    apps: Vec<OwnApp>,
    #[serde(flatten)]
    other: Other,
}

#[derive(Deserialize)]
struct OwnApp {
    bundle_id: String,
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    associated_domains: Vec<String>,
    #[serde(flatten)]
    other: Other,
}

type Converted = Result<(MdmDevice, Vec<String>), String>;

fn own_device(doc: &Doc<'_>, range: Range<usize>, errs: &mut Errors) -> Converted {
    let line = doc.line(range.start);
    let d: OwnDevice = doc.parse(range)?;
    for k in d.other.keys() {
        errs.unknown_key(line, "a device", k);
    }
    for k in d.apps.iter().flat_map(|a| a.other.keys()) {
        errs.unknown_key(line, "a device's app", k);
    }
    let wifi_mac = mac_text(nonempty(d.wifi_mac), "wifi_mac")?;
    let mut apps = Vec::with_capacity(d.apps.len());
    for (i, a) in d.apps.into_iter().enumerate() {
        let bundle_id = a.bundle_id.trim().to_string();
        if bundle_id.is_empty() {
            return Err(format!("apps[{i}].bundle_id is empty"));
        }
        let mut associated_domains = Vec::with_capacity(a.associated_domains.len());
        for s in a.associated_domains {
            let s = s.trim();
            if s.is_empty() {
                return Err(format!("apps[{i}].associated_domains has an empty entry"));
            }
            associated_domains.push(s.to_string());
        }
        apps.push(ManagedApp {
            bundle_id,
            name: nonempty(a.name),
            version: nonempty(a.version),
            associated_domains,
        });
    }
    finish(MdmDevice {
        serial: nonempty(d.serial),
        udid: nonempty(d.udid),
        name: nonempty(d.name),
        model: nonempty(d.model),
        os: nonempty(d.os),
        supervised: d.supervised,
        managed: d.managed,
        ownership: nonempty(d.ownership),
        wifi_mac,
        apps,
        source: "blindspot",
    })
    .map(|d| (d, Vec::new()))
}

// ---- Jamf Pro ---------------------------------------------------------------

fn jamf_pro(v: &Value) -> Converted {
    let o = object(v, "the device")?;
    let general = section(o, "general")?;
    let hardware = section(o, "hardware")?;
    if general.is_none() && hardware.is_none() {
        return Err(
            "no general or hardware section (ask for section=GENERAL&section=HARDWARE)".into(),
        );
    }
    let g = |k: &str| general.and_then(|s| s.get(k));
    let h = |k: &str| hardware.and_then(|s| s.get(k));
    let platform = text(o.get("deviceType"), "deviceType")?.and_then(|t| platform_name(&t));
    let version = text(g("osVersion"), "general.osVersion")?;
    let model = match text(h("modelIdentifier"), "hardware.modelIdentifier")? {
        Some(m) => Some(m),
        None => text(h("model"), "hardware.model")?,
    };
    let (apps, app_errors) = vendor_apps(
        o.get("applications"),
        "applications",
        "identifier",
        "name",
        &["shortVersion", "version"],
    )?;
    let device = finish(MdmDevice {
        serial: text(h("serialNumber"), "hardware.serialNumber")?,
        udid: text(g("udid"), "general.udid")?,
        name: text(g("displayName"), "general.displayName")?,
        model,
        os: os_string(platform, version),
        supervised: flag(g("supervised"), "general.supervised")?,
        managed: flag(g("managed"), "general.managed")?,
        ownership: text(g("deviceOwnershipType"), "general.deviceOwnershipType")?
            .map(|s| jamf_ownership(&s)),
        wifi_mac: mac(h("wifiMacAddress"), "hardware.wifiMacAddress")?,
        apps,
        source: "jamf",
    })?;
    Ok((device, app_errors))
}

fn jamf_classic(v: &Value) -> Converted {
    let outer = object(v, "the device")?;
    // `{"mobile_device": {...}}`, or the object itself (list items, arrays of devices).
    let md = match outer.get("mobile_device") {
        Some(inner) => object(inner, "mobile_device")?,
        None => outer,
    };
    let general = section(md, "general")?.unwrap_or(md);
    let g = |k: &str| general.get(k);
    let name = match text(g("display_name"), "general.display_name")? {
        Some(n) => Some(n),
        None => match text(g("device_name"), "general.device_name")? {
            Some(n) => Some(n),
            None => text(g("name"), "general.name")?,
        },
    };
    let model = match text(g("model_identifier"), "general.model_identifier")? {
        Some(m) => Some(m),
        None => text(g("model"), "general.model")?,
    };
    let (apps, app_errors) = vendor_apps(
        md.get("applications"),
        "applications",
        "identifier",
        "application_name",
        &["application_short_version", "application_version"],
    )?;
    let device = finish(MdmDevice {
        serial: text(g("serial_number"), "general.serial_number")?,
        udid: text(g("udid"), "general.udid")?,
        name,
        model,
        os: os_string(
            text(g("os_type"), "general.os_type")?,
            text(g("os_version"), "general.os_version")?,
        ),
        supervised: flag(g("supervised"), "general.supervised")?,
        managed: flag(g("managed"), "general.managed")?,
        ownership: text(
            g("device_ownership_level"),
            "general.device_ownership_level",
        )?
        .map(|s| jamf_ownership(&s)),
        wifi_mac: mac(g("wifi_mac_address"), "general.wifi_mac_address")?,
        apps,
        source: "jamf",
    })?;
    Ok((device, app_errors))
}

/// Jamf's ownership names to blindspot's (`corporate`, `personal`); others as given.
fn jamf_ownership(s: &str) -> String {
    let folded: String = s
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match folded.as_str() {
        "institutional" | "accountdrivendeviceenrollment" => "corporate".into(),
        "personal" | "personaldeviceprofile" | "userenrollment" | "accountdrivenuserenrollment" => {
            "personal".into()
        }
        _ => s.to_string(),
    }
}

fn platform_name(device_type: &str) -> Option<String> {
    let p = match device_type.to_ascii_lowercase().as_str() {
        "ios" => "iOS",
        "ipados" => "iPadOS",
        "tvos" | "appletv" => "tvOS",
        "watchos" | "watch" => "watchOS",
        "visionos" => "visionOS",
        _ => return None,
    };
    Some(p.into())
}

/// Apps from a vendor list: a missing bundle ID skips that app only.
fn vendor_apps(
    list: Option<&Value>,
    what: &str,
    id_key: &str,
    name_key: &str,
    version_keys: &[&str],
) -> Result<(Vec<ManagedApp>, Vec<String>), String> {
    let items = match list {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("{what} is {}, expected an array", kind(other))),
    };
    let mut apps = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let app = (|| -> Result<ManagedApp, String> {
            let o = object(item, &format!("{what}[{i}]"))?;
            let bundle_id = text(o.get(id_key), &format!("{what}[{i}].{id_key}"))?
                .ok_or_else(|| format!("{what}[{i}] skipped: no {id_key} (bundle ID)"))?;
            let mut version = None;
            for k in version_keys {
                version = text(o.get(*k), &format!("{what}[{i}].{k}"))?;
                if version.is_some() {
                    break;
                }
            }
            Ok(ManagedApp {
                bundle_id,
                name: text(o.get(name_key), &format!("{what}[{i}].{name_key}"))?,
                version,
                associated_domains: Vec::new(),
            })
        })();
        match app {
            Ok(a) => apps.push(a),
            Err(m) => errors.push(m),
        }
    }
    Ok((apps, errors))
}

// ---- Intune -------------------------------------------------------------------

fn intune(v: &Value) -> Converted {
    let o = object(v, "the device")?;
    let f = |k: &str| get_ci(o, k);
    let hw = match f("hardwareInformation") {
        Some(Value::Object(h)) => Some(h),
        _ => None,
    };
    let wifi_mac = match mac(f("wiFiMacAddress"), "wiFiMacAddress")? {
        Some(m) => Some(m),
        None => mac(
            hw.and_then(|h| get_ci(h, "wifiMac")),
            "hardwareInformation.wifiMac",
        )?,
    };
    let owner = match text(f("managedDeviceOwnerType"), "managedDeviceOwnerType")? {
        Some(s) => Some(s),
        None => text(f("ownerType"), "ownerType")?,
    };
    let ownership = owner.and_then(|s| match s.to_ascii_lowercase().as_str() {
        "company" => Some("corporate".to_string()),
        "personal" => Some("personal".to_string()),
        "unknown" => None,
        _ => Some(s),
    });
    let managed = match text(f("managementAgent"), "managementAgent")? {
        Some(agent) => Some(agent.to_ascii_lowercase().contains("mdm")),
        None => text(f("managementState"), "managementState")?
            .map(|s| s.eq_ignore_ascii_case("managed")),
    };
    let device = finish(MdmDevice {
        serial: text(f("serialNumber"), "serialNumber")?,
        udid: text(f("udid"), "udid")?,
        name: text(f("deviceName"), "deviceName")?,
        model: text(f("model"), "model")?,
        os: os_string(
            text(f("operatingSystem"), "operatingSystem")?,
            text(f("osVersion"), "osVersion")?,
        ),
        supervised: flag(f("isSupervised"), "isSupervised")?,
        managed,
        ownership,
        wifi_mac,
        apps: Vec::new(),
        source: "intune",
    })?;
    Ok((device, Vec::new()))
}

// ---- shared -------------------------------------------------------------------

/// A device must carry something to match it by.
fn finish(d: MdmDevice) -> Result<MdmDevice, String> {
    if d.serial.is_none() && d.udid.is_none() && d.wifi_mac.is_none() {
        return Err("no serial number, UDID or Wi-Fi MAC to match the device by".into());
    }
    Ok(d)
}

/// `"iOS"` + `"17.5.1"` → `"iOS 17.5.1"` (a version that already names the
/// platform is kept as it is).
fn os_string(platform: Option<String>, version: Option<String>) -> Option<String> {
    match (platform, version) {
        (Some(p), Some(v)) if v.starts_with(&p) => Some(v),
        (Some(p), Some(v)) => Some(format!("{p} {v}")),
        (p, v) => v.or(p),
    }
}

fn object<'v>(v: &'v Value, what: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} is {}, expected an object", kind(v)))
}

/// An optional sub-object; absent or null is `None`.
fn section<'v>(
    o: &'v Map<String, Value>,
    key: &str,
) -> Result<Option<&'v Map<String, Value>>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v, key).map(Some),
    }
}

/// The member `key`, else the first whose name matches in any case.
fn get_ci<'v>(o: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A boolean; `"true"`/`"false"` strings too (older Jamf exports).
fn flag(v: Option<&Value>, what: &str) -> Result<Option<bool>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(format!(
            "{what} is {}, expected true or false",
            shown_value(other)
        )),
    }
}

fn shown_value(v: &Value) -> String {
    match v {
        Value::String(s) => shown(s),
        other => kind(other).to_string(),
    }
}

fn mac(v: Option<&Value>, what: &str) -> Result<Option<[u8; 6]>, String> {
    mac_text(text(v, what)?, what)
}

fn mac_text(s: Option<String>, what: &str) -> Result<Option<[u8; 6]>, String> {
    let Some(s) = s else { return Ok(None) };
    match parse_mac(&s) {
        Some([0, 0, 0, 0, 0, 0]) => Ok(None),
        Some(m) => Ok(Some(m)),
        None => Err(format!(
            "{what} {} is not a MAC address (expected {MAC_FORMS})",
            shown(&s)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Loaded<MdmDevice>, LoadError> {
        parse_str(text, "t.json")
    }

    #[test]
    fn own_shape_loads_and_names_unknown_keys_with_their_lines() {
        let text = r#"{"devices": [
  {"serial": "S1", "wifi_mac": "02-00-5E-10-00-01", "supervised": true,
   "apps": [{"bundle_id": "com.example.a", "associated_domains": ["applinks:a.example"]}]},
  {"serial": "S2",
   "colour": "red"},
  {"udid": "U3", "wifi_mac": "02:00:5e:10:00:zz"},
  {"name": "nothing to match"}
],
"extra": 1}"#;
        let got = load_str(text).unwrap();
        // S2's unknown key is a warning: it still loads.
        assert_eq!(got.items.len(), 2);
        let d = &got.items[0];
        assert_eq!(d.serial.as_deref(), Some("S1"));
        assert_eq!(d.wifi_mac, Some([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]));
        assert_eq!(d.apps[0].associated_domains, ["applinks:a.example"]);
        assert_eq!(d.source, "blindspot");
        assert_eq!(got.items[1].serial.as_deref(), Some("S2"));
        let warned: Vec<String> = got.warnings.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            warned,
            [
                "t.json:4: unknown key \"colour\" in a device ignored (warned once per file)",
                "t.json:9: unknown key \"extra\" in the top level ignored (warned once per file)",
            ]
        );
        let msgs: Vec<String> = got.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs[0].starts_with(
                "t.json:6: device 3 skipped: wifi_mac \"02:00:5e:10:00:zz\" is not a MAC"
            ),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].starts_with("t.json:7: device 4 skipped: no serial"),
            "{}",
            msgs[1]
        );
    }

    #[test]
    fn not_a_shape_is_an_error_naming_the_shapes() {
        for text in [
            "",
            "42",
            "{\"foo\": []}",
            "[{\"foo\": 1}]",
            "{\"devices\": [}",
            "{\"devices\": {}}",
        ] {
            let e = load_str(text).unwrap_err();
            assert_eq!(e.file, "t.json");
            assert!(!e.message.is_empty());
        }
        let e = load_str("{\n\"devices\": [\n{\"serial\": }]}").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("Jamf"), "{e}");
        assert_eq!(load_str("[]").unwrap().items.len(), 0);
    }

    #[test]
    fn jamf_classic_single_device_and_intune_pascal_case() {
        let text = r#"{"mobile_device": {"general": {"serial_number": "C02Q7KHTGFWF",
            "udid": "270aae10800b6e61a2ee2bbc285eb967050b5984", "display_name": "Tinas iPad",
            "os_type": "iOS", "os_version": "10.3.2", "wifi_mac_address": "", "managed": "true",
            "supervised": true, "device_ownership_level": "Institutional", "model_identifier": "iPad7,5"},
            "applications": [{"application_name": "Self Service", "application_version": "2021040101",
              "application_short_version": "10.10.6", "identifier": "com.jamfsoftware.selfservice"},
              {"application_name": "no id"}]}}"#;
        let got = load_str(text).unwrap();
        assert_eq!(got.items.len(), 1);
        let d = &got.items[0];
        assert_eq!(d.os.as_deref(), Some("iOS 10.3.2"));
        assert_eq!(d.wifi_mac, None);
        assert_eq!(d.managed, Some(true));
        assert_eq!(d.ownership.as_deref(), Some("corporate"));
        assert_eq!(d.apps.len(), 1);
        assert_eq!(d.apps[0].version.as_deref(), Some("10.10.6"));
        assert_eq!(got.errors.len(), 1);
        assert!(
            got.errors[0].message.contains("no identifier"),
            "{}",
            got.errors[0]
        );

        let text = "\u{feff}[{\"DeviceName\": \"x\", \"SerialNumber\": \"S\", \"WiFiMacAddress\": \"a4c3f0851234\", \"ManagedDeviceOwnerType\": \"company\", \"OperatingSystem\": \"iOS\", \"OsVersion\": \"17.5\", \"ManagementAgent\": \"mdm\"}]";
        let got = load_str(text).unwrap();
        assert_eq!(got.errors, []);
        let d = &got.items[0];
        assert_eq!(d.source, "intune");
        assert_eq!(d.wifi_mac, Some([0xa4, 0xc3, 0xf0, 0x85, 0x12, 0x34]));
        assert_eq!(d.ownership.as_deref(), Some("corporate"));
        assert_eq!(d.os.as_deref(), Some("iOS 17.5"));
        assert_eq!(d.managed, Some(true));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let deep = "[".repeat(100_000);
        let mut cases = vec![
            deep.clone(),
            format!("{{\"devices\": {deep}"),
            format!("{{\"devices\": [{}1{}]}}", "[".repeat(200), "]".repeat(200)),
            "{\"devices\": [1, null, \"x\", [], {\"serial\": 5}]}".to_string(),
            "{\"results\": [1, {\"general\": 3}, {\"hardware\": {\"wifiMacAddress\": 7}}]}".to_string(),
            "{\"value\": [{\"wiFiMacAddress\": {}}, {\"isSupervised\": \"maybe\", \"udid\": \"u\"}]}".to_string(),
            "{\"mobile_devices\": [{\"serial_number\": [\"x\"]}]}".to_string(),
            "{\"mobile_device\": 5}".to_string(),
            "{\"devices\": [{\"serial\": \"\\u0000\", \"wifi_mac\": \"\u{1F600}\u{1F600}\u{1F600}\u{1F600}\"}]}".to_string(),
        ];
        // Every prefix of a valid document.
        let valid = r#"{"devices": [{"serial": "S", "wifi_mac": "aa:bb:cc:dd:ee:ff", "apps": [{"bundle_id": "b"}]}]}"#;
        for i in 0..valid.len() {
            cases.push(valid[..i].to_string());
        }
        for c in &cases {
            let _ = load_str(c);
        }
    }
    const FIXTURES: [&str; 4] = [
        include_str!("../../fixtures/inventory/mdm-blindspot.json"),
        include_str!("../../fixtures/inventory/mdm-jamf.json"),
        include_str!("../../fixtures/inventory/mdm-jamf-classic.json"),
        include_str!("../../fixtures/inventory/mdm-intune.json"),
    ];

    /// Byte flips, insertions and cuts of the example files: never a panic.
    #[test]
    fn mutated_examples_do_not_panic() {
        for original in FIXTURES {
            crate::inputs::for_each_mutation(original, |text| {
                let _ = parse_str(text, "f");
            });
        }
    }
}
