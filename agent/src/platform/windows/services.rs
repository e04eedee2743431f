//! Windows' answer to failed systemd units: services set to start
//! automatically with Windows that are not running. Services started on
//! demand, by a trigger, or delayed (updaters that run and stop, as
//! `gupdate` and `edgeupdate` do) are not expected to stay up and are
//! left out, as Checkmk's and Zabbix's Windows templates do.

use campanile_proto::v1::FailedUnits;

use super::values::Values;

pub const SERVICES_KEY: &str = r"SYSTEM\CurrentControlSet\Services";

/// `Start` of a service's key: SERVICE_AUTO_START.
const AUTO_START: u32 = 2;
/// The names a report carries, as for systemd units.
const MAX_NAMES: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub running: bool,
}

/// Whether a service's configuration (its key under `Services`) says it
/// must run from boot on: automatic, not delayed, no start triggers.
pub fn expected_running(config: &Values, has_triggers: bool) -> bool {
    config.dword("Start") == Some(AUTO_START)
        && config.dword("DelayedAutostart") != Some(1)
        && !has_triggers
}

/// The services expected to run that do not, by name.
pub fn failed<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    expected: impl Fn(&str) -> bool,
) -> FailedUnits {
    let mut names: Vec<String> = services
        .into_iter()
        .filter(|s| !s.running && expected(&s.name))
        .map(|s| s.name.clone())
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    FailedUnits {
        count: u32::try_from(names.len()).unwrap_or(u32::MAX),
        names: names.into_iter().take(MAX_NAMES).collect(),
    }
}

// Calls into Windows: each unsafe block says why it is sound.
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod read {
    //! The Service Control Manager's list, and each stopped service's
    //! configuration from the registry (cached: it changes when software
    //! is installed, not between two reports).
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::platform::windows::registry;
    use crate::platform::windows::uninstall::View;
    use windows_sys::Win32::Foundation::ERROR_MORE_DATA;
    use windows_sys::Win32::System::Services::{
        CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
        SC_ENUM_PROCESS_INFO, SC_MANAGER_ENUMERATE_SERVICE, SERVICE_RUNNING, SERVICE_STATE_ALL,
        SERVICE_WIN32,
    };

    const CONFIG_REFRESH: Duration = Duration::from_secs(3600);

    type Expected = HashMap<String, bool>;
    static CONFIG: Mutex<Option<(Instant, Expected)>> = Mutex::new(None);

    pub fn failed_services() -> Option<FailedUnits> {
        let services = list()?;
        let mut cache = CONFIG.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > CONFIG_REFRESH)
        {
            *cache = Some((Instant::now(), HashMap::new()));
        }
        let (_, configs) = cache.as_mut()?;
        // Only the stopped ones need their configuration read.
        for s in services.iter().filter(|s| !s.running) {
            configs
                .entry(s.name.clone())
                .or_insert_with(|| configured_to_run(&s.name));
        }
        Some(failed(&services, |name| {
            configs.get(name).copied().unwrap_or(false)
        }))
    }

    fn configured_to_run(name: &str) -> bool {
        let Some(key) = registry::open(&format!(r"{SERVICES_KEY}\{name}"), View::Native64) else {
            return false;
        };
        let triggers = key
            .open_subkey_with_flags("TriggerInfo", winreg::enums::KEY_READ)
            .is_ok();
        expected_running(&registry::values(&key), triggers)
    }

    /// Every Win32 service with its state.
    fn list() -> Option<Vec<Service>> {
        // SAFETY: null machine and database name: the local SCM.
        let scm = unsafe {
            OpenSCManagerW(
                std::ptr::null(),
                std::ptr::null(),
                SC_MANAGER_ENUMERATE_SERVICE,
            )
        };
        if scm.is_null() {
            return None;
        }
        let mut out = Vec::new();
        let mut resume: u32 = 0;
        let mut buf = vec![0u64; 64 * 1024 / 8];
        let ok = loop {
            let (mut needed, mut returned) = (0u32, 0u32);
            // SAFETY: `buf` is writable for the size passed and aligned for
            // the structs; `resume` carries on where the last call stopped.
            let rc = unsafe {
                EnumServicesStatusExW(
                    scm,
                    SC_ENUM_PROCESS_INFO,
                    SERVICE_WIN32,
                    SERVICE_STATE_ALL,
                    buf.as_mut_ptr().cast(),
                    (buf.len() * 8) as u32,
                    &mut needed,
                    &mut returned,
                    &mut resume,
                    std::ptr::null(),
                )
            };
            let more = rc == 0
                && std::io::Error::last_os_error().raw_os_error() == Some(ERROR_MORE_DATA as i32);
            if rc == 0 && !more {
                break false;
            }
            let entries = buf.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>();
            for i in 0..returned as usize {
                // SAFETY: Windows wrote `returned` entries at the start of
                // `buf`; their strings point into the rest of it.
                let e = unsafe { &*entries.add(i) };
                // SAFETY: as above: the name lives in `buf`.
                let name = unsafe { crate::platform::windows::wide::to_string(e.lpServiceName) };
                out.push(Service {
                    name,
                    running: e.ServiceStatusProcess.dwCurrentState == SERVICE_RUNNING,
                });
            }
            if !more {
                break true;
            }
            if needed as usize > buf.len() * 8 {
                buf = vec![0u64; (needed as usize).div_ceil(8)];
            }
        };
        // SAFETY: the handle opened above.
        unsafe { CloseServiceHandle(scm) };
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::windows::values::fixtures::subkeys;

    #[test]
    fn automatic_services_that_stopped_are_failed_and_others_are_not() {
        let text = include_str!("fixtures/services.txt");
        let configs = subkeys(text, SERVICES_KEY);
        // TriggerInfo subkeys show as keys of their own in `reg query /s`.
        let triggered: Vec<String> = crate::platform::windows::values::fixtures::keys(text)
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_suffix(r"\TriggerInfo")
                    .and_then(|s| s.rsplit('\\').next())
                    .map(str::to_owned)
            })
            .collect();
        let expected = |name: &str| {
            configs
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(n, v)| expected_running(v, triggered.contains(n)))
        };
        let state = [
            ("Spooler", false),
            ("WinDefend", true),
            ("gupdate", false),
            ("edgeupdate", false),
            ("W32Time", false),
            ("wuauserv", false),
            ("BITS", false),
            ("Dnscache", true),
            ("VeeamEndpointBackupSvc", false),
        ];
        let services: Vec<Service> = state
            .iter()
            .map(|(n, running)| Service {
                name: (*n).into(),
                running: *running,
            })
            .collect();
        let f = failed(&services, expected);
        assert_eq!(f.names, ["Spooler", "VeeamEndpointBackupSvc"]);
        assert_eq!(f.count, 2);
    }

    #[test]
    fn at_most_sixteen_names_but_every_one_counted() {
        let services: Vec<Service> = (0..20)
            .map(|i| Service {
                name: format!("svc{i:02}"),
                running: false,
            })
            .collect();
        let f = failed(&services, |_| true);
        assert_eq!(f.count, 20);
        assert_eq!(f.names.len(), 16);
        assert_eq!(f.names[0], "svc00");
    }
}
