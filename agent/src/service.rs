//! The agent as a Windows service: installed into the Service Control
//! Manager, started with Windows under LocalSystem, stopped by the SCM
//! (a service stop or the machine's shutdown) as `run` is by Ctrl-C.
//!
//! LocalSystem because the agent reads what only an administrator may
//! (every physical drive, every service's configuration) and sends ICMP
//! through a raw socket, which Windows gives administrators alone; the
//! enrolled key is readable by SYSTEM and Administrators only.

use std::ffi::OsString;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

pub const SERVICE_NAME: &str = "CampanileAgent";
const DISPLAY_NAME: &str = "Campanile agent";
const DESCRIPTION: &str =
    "Reports this PC's health and inventory to the territory's Campanile collector.";
/// What the SCM is told a stop may take: the call in flight is given
/// this long to be answered.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the Service Control Manager refused to {what}: {source}")]
    Scm {
        what: &'static str,
        #[source]
        source: windows_service::Error,
    },
    #[error("not started by the Service Control Manager: use `run` from a console")]
    NotUnderScm,
    #[error("the agent stopped with an error: {0}")]
    Agent(String),
}

fn scm(what: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |source| ServiceError::Scm { what, source }
}

/// Registers the service: automatic start, LocalSystem, restarted by the
/// SCM a minute after a crash (three times a day at most), run as
/// `EXE service run --config CONFIG`.
pub fn install(exe: &Path, config: &Path) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(scm("be opened"))?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_owned(),
        launch_arguments: vec![
            "service".into(),
            "run".into(),
            "--config".into(),
            config.as_os_str().to_owned(),
        ],
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(scm("create the service"))?;
    service
        .set_description(DESCRIPTION)
        .map_err(scm("set the description"))?;
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(60),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart.clone(), restart.clone(), restart]),
        })
        .map_err(scm("set the recovery actions"))?;
    Ok(())
}

/// Stops the service if it runs, then removes it.
pub fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(scm("be opened"))?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(scm("open the service"))?;
    let now = service.query_status().map_err(scm("query the service"))?;
    if now.current_state != ServiceState::Stopped {
        service.stop().map_err(scm("stop the service"))?;
        let deadline = std::time::Instant::now() + STOP_WAIT * 2;
        while std::time::Instant::now() < deadline {
            match service.query_status() {
                Ok(s) if s.current_state == ServiceState::Stopped => break,
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
    service.delete().map_err(scm("delete the service"))
}

/// A stop request from the SCM, as a future.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
type Body = Box<dyn FnOnce(Shutdown) -> Result<(), String> + Send>;

static BODY: Mutex<Option<Body>> = Mutex::new(None);
static OUTCOME: Mutex<Option<Result<(), ServiceError>>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM, which calls `body` on a thread of its
/// own with a future that completes on a stop. Returns when the service
/// has stopped.
pub fn run(
    body: impl FnOnce(Shutdown) -> Result<(), String> + Send + 'static,
) -> Result<(), ServiceError> {
    *BODY.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(body));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| match e {
        // ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: started from a console.
        windows_service::Error::Winapi(ref io) if io.raw_os_error() == Some(1063) => {
            ServiceError::NotUnderScm
        }
        e => ServiceError::Scm {
            what: "start the dispatcher",
            source: e,
        },
    })?;
    OUTCOME
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or(Ok(()))
}

fn service_main(_arguments: Vec<OsString>) {
    let outcome = serve();
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "service stopped with an error");
    }
    *OUTCOME.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
}

fn serve() -> Result<(), ServiceError> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop_tx = Mutex::new(Some(stop_tx));
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            tracing::info!(?control, "stop asked by the Service Control Manager");
            if let Some(tx) = stop_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .map_err(scm("register the control handler"))?;
    handle
        .set_service_status(status(ServiceState::Running, 0, Duration::ZERO))
        .map_err(scm("report the service running"))?;
    let body = BODY.lock().unwrap_or_else(|p| p.into_inner()).take();
    let shutdown: Shutdown = Box::pin(async move {
        let _ = stop_rx.await;
        // The SCM waits this long before it calls the service hung.
        let _ = handle.set_service_status(status(ServiceState::StopPending, 0, STOP_WAIT));
    });
    let result = match body {
        Some(body) => body(shutdown).map_err(ServiceError::Agent),
        None => Ok(()),
    };
    // ERROR_SERVICE_SPECIFIC_ERROR would hide the cause; 1 says "failed"
    // and the log says why.
    let exit = u32::from(result.is_err());
    handle
        .set_service_status(status(ServiceState::Stopped, exit, Duration::ZERO))
        .map_err(scm("report the service stopped"))?;
    result
}

fn status(state: ServiceState, exit: u32, wait: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}
