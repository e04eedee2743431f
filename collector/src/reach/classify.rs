//! One reachability state per site, for alerting to tell a dark site from
//! a local power fault from one PC switched off.

use campanile_territory::evaluate::Counts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reachability {
    /// Every host that reports lately is up.
    Ok,
    /// Some hosts silent, others up: single machines, not the line.
    SomeHostsSilent,
    /// Every host silent, but the centre reaches the site's WAN address:
    /// power cut, switch or LAN fault on site.
    AllHostsSilentLineUp,
    /// Every host silent and the WAN address unreachable from the centre
    /// (or, with no hosts, the WAN address alone unreachable).
    Dark,
    /// Every host silent; the site has no WAN address to tell more.
    AllHostsSilentLineUnknown,
    /// No host of the site reports (or has lately), and nothing says the
    /// line is down.
    NoHosts,
}

impl Reachability {
    pub const ALL: [Reachability; 6] = [
        Reachability::Ok,
        Reachability::SomeHostsSilent,
        Reachability::AllHostsSilentLineUp,
        Reachability::Dark,
        Reachability::AllHostsSilentLineUnknown,
        Reachability::NoHosts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Ok => "ok",
            Reachability::SomeHostsSilent => "some_hosts_silent",
            Reachability::AllHostsSilentLineUp => "all_hosts_silent_line_up",
            Reachability::Dark => "dark",
            Reachability::AllHostsSilentLineUnknown => "all_hosts_silent_line_unknown",
            Reachability::NoHosts => "no_hosts",
        }
    }
}

/// `wan_up`: the centre's latest WAN probe of the site, `None` when the
/// site has no WAN address or it was not probed yet.
pub fn classify(counts: &Counts, wan_up: Option<bool>) -> Reachability {
    // Hosts silent for longer than `missing_after_days` count as missing
    // assets, not as part of the site's current state.
    let (up, silent) = (counts.reporting, counts.offline);
    match (up, silent, wan_up) {
        (0, 0, Some(false)) => Reachability::Dark,
        (0, 0, _) => Reachability::NoHosts,
        (_, 0, _) => Reachability::Ok,
        (0, _, Some(true)) => Reachability::AllHostsSilentLineUp,
        (0, _, Some(false)) => Reachability::Dark,
        (0, _, None) => Reachability::AllHostsSilentLineUnknown,
        _ => Reachability::SomeHostsSilent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(reporting: u64, offline: u64) -> Counts {
        Counts {
            reporting,
            offline,
            ..Counts::default()
        }
    }

    #[test]
    fn tells_a_dark_site_from_a_power_cut_from_one_silent_pc() {
        use Reachability::*;
        for (reporting, offline, wan, expected) in [
            (3, 0, Some(true), Ok),
            (3, 0, None, Ok),
            // Agents report: the line works, whatever the WAN probe says.
            (3, 0, Some(false), Ok),
            (2, 1, Some(true), SomeHostsSilent),
            (2, 1, Some(false), SomeHostsSilent),
            (0, 3, Some(true), AllHostsSilentLineUp),
            (0, 3, Some(false), Dark),
            (0, 3, None, AllHostsSilentLineUnknown),
            (0, 0, Some(false), Dark),
            (0, 0, Some(true), NoHosts),
            (0, 0, None, NoHosts),
        ] {
            assert_eq!(
                classify(&counts(reporting, offline), wan),
                expected,
                "{reporting} up, {offline} silent, wan {wan:?}"
            );
        }
    }
}
