//! Data residency: the zones a cluster may promise (`[[cluster]] residency = "eu"`), the Azure
//! regions inside each, and the start-up check that every repository lies inside its cluster's
//! zone.
//!
//! Example: a cluster with `residency = "eu"` and repositories in `germanywestcentral` (primary)
//! and `northeurope` (DR) passes; one in `eastus` is refused as "repository \"dr\" is in region
//! eastus, outside residency zone eu", unless it carries `allow-cross-zone = "<reason>"`, which
//! is logged at WARN each time the configuration is loaded.
//!
//! Invariant: when a zone is set, no repository is used unless its region is known to be in the
//! zone or it was explicitly exempted; an unknown or missing region is refused, never guessed.

use std::fmt;
use std::str::FromStr;

/// A residency zone: the jurisdiction backups must stay in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// European Union and EEA (Switzerland and Norway included, as Azure groups them).
    Eu,
    /// United States.
    Us,
    /// United Kingdom.
    Uk,
    /// Canada.
    Ca,
    /// Australia.
    Au,
}

/// Every zone, in the order messages list them.
pub const ZONES: [Zone; 5] = [Zone::Eu, Zone::Us, Zone::Uk, Zone::Ca, Zone::Au];

impl Zone {
    /// The zone's name as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Eu => "eu",
            Zone::Us => "us",
            Zone::Uk => "uk",
            Zone::Ca => "ca",
            Zone::Au => "au",
        }
    }

    /// The Azure regions (their programmatic names) inside the zone.
    pub fn regions(self) -> &'static [&'static str] {
        match self {
            Zone::Eu => &[
                "germanywestcentral",
                "germanynorth",
                "northeurope",
                "westeurope",
                "francecentral",
                "francesouth",
                "swedencentral",
                "swedensouth",
                "norwayeast",
                "norwaywest",
                "switzerlandnorth",
                "switzerlandwest",
                "italynorth",
                "polandcentral",
                "spaincentral",
                "austriaeast",
                "belgiumcentral",
                "denmarkeast",
            ],
            Zone::Us => &[
                "eastus",
                "eastus2",
                "westus",
                "westus2",
                "westus3",
                "centralus",
                "northcentralus",
                "southcentralus",
                "westcentralus",
            ],
            Zone::Uk => &["uksouth", "ukwest"],
            Zone::Ca => &["canadacentral", "canadaeast"],
            Zone::Au => &[
                "australiaeast",
                "australiasoutheast",
                "australiacentral",
                "australiacentral2",
            ],
        }
    }

    /// Whether `region` (any case, spaces ignored: "Germany West Central") lies in the zone.
    pub fn contains(self, region: &str) -> bool {
        let region = normalize(region);
        self.regions().iter().any(|r| *r == region)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Zone, String> {
        ZONES.into_iter().find(|z| z.as_str() == s).ok_or_else(|| {
            let names: Vec<String> = ZONES.iter().map(|z| format!("{:?}", z.as_str())).collect();
            format!(
                "residency = {s:?} is not a zone; supported: {}",
                names.join(", ")
            )
        })
    }
}

/// The portal writes "Germany West Central", the API `germanywestcentral`.
fn normalize(region: &str) -> String {
    region
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// What the check needs to know of one repository.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The repository's name.
    pub repository: &'a str,
    /// Its kind, for messages: "azure" or "local".
    pub kind: &'a str,
    /// The region it lives in, if given.
    pub region: Option<&'a str>,
    /// The reason it may lie outside the zone, if exempted.
    pub allow_cross_zone: Option<&'a str>,
}

/// The verdict on one repository that may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No zone is set, or the region is inside it.
    Inside,
    /// A local repository without a region: nothing to check against.
    Unplaced,
    /// Outside the zone (or unplaced) but exempted: the message to log at WARN.
    Exempted(String),
}

/// Checks one repository against `zone`; `Err` names the zone, the region and the fix.
pub fn check(zone: Option<Zone>, p: &Placement<'_>) -> Result<Verdict, String> {
    let Some(zone) = zone else {
        return Ok(Verdict::Inside);
    };
    let problem = match p.region {
        Some(r) if zone.contains(r) => return Ok(Verdict::Inside),
        // A local directory's location is not ours to know unless the operator says it.
        None if p.kind == "local" => return Ok(Verdict::Unplaced),
        Some(r) => format!(
            "repository {:?} is in region {r}, outside residency zone {zone} ({})",
            p.repository,
            zone.regions().join(", ")
        ),
        None => format!(
            "repository {:?} names no region, and residency zone {zone} is enforced",
            p.repository
        ),
    };
    match p.allow_cross_zone {
        Some(reason) => Ok(Verdict::Exempted(format!(
            "{problem}; allowed by allow-cross-zone: {reason}"
        ))),
        None => Err(format!(
            "{problem}\nhint: set region = \"...\" to the {} repository's Azure region, move it \
             into the zone, or set allow-cross-zone = \"<reason>\" on it to accept this",
            p.kind
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure<'a>(region: Option<&'a str>, allow: Option<&'a str>) -> Placement<'a> {
        Placement {
            repository: "dr",
            kind: "azure",
            region,
            allow_cross_zone: allow,
        }
    }

    #[test]
    fn zones_parse_and_hold_their_regions() {
        assert_eq!("eu".parse::<Zone>().unwrap(), Zone::Eu);
        let err = "europe".parse::<Zone>().unwrap_err();
        assert!(err.contains("\"eu\"") && err.contains("\"au\""), "{err}");
        assert!(Zone::Eu.contains("germanywestcentral"));
        assert!(Zone::Eu.contains("North Europe"));
        assert!(Zone::Us.contains("westus2"));
        assert!(!Zone::Eu.contains("uksouth"));
        assert!(!Zone::Uk.contains("westeurope"));
    }

    #[test]
    fn no_region_is_in_two_zones() {
        for a in ZONES {
            for b in ZONES.into_iter().filter(|b| *b != a) {
                for r in a.regions() {
                    assert!(!b.contains(r), "{r} is in {a} and {b}");
                }
            }
        }
    }

    #[test]
    fn a_region_outside_the_zone_is_refused_naming_both() {
        let err = check(Some(Zone::Eu), &azure(Some("eastus"), None)).unwrap_err();
        assert!(
            err.contains("region eastus") && err.contains("residency zone eu"),
            "{err}"
        );
        assert!(err.contains("allow-cross-zone"), "{err}");
        let missing = check(Some(Zone::Eu), &azure(None, None)).unwrap_err();
        assert!(missing.contains("names no region"), "{missing}");
    }

    #[test]
    fn an_exemption_turns_the_refusal_into_a_warning_with_its_reason() {
        let v = check(
            Some(Zone::Eu),
            &azure(Some("eastus"), Some("legal hold copy")),
        )
        .unwrap();
        let Verdict::Exempted(msg) = v else {
            panic!("{v:?}")
        };
        assert!(
            msg.contains("eastus") && msg.contains("zone eu") && msg.contains("legal hold copy"),
            "{msg}"
        );
    }

    #[test]
    fn local_repositories_are_checked_only_when_they_name_a_region() {
        let mut local = azure(None, None);
        local.kind = "local";
        assert_eq!(check(Some(Zone::Eu), &local).unwrap(), Verdict::Unplaced);
        local.region = Some("ukwest");
        assert!(check(Some(Zone::Eu), &local).is_err());
        assert_eq!(
            check(None, &azure(Some("eastus"), None)).unwrap(),
            Verdict::Inside
        );
    }
}

#[cfg(test)]
mod config_tests;
