//! The `meshkit` command line, as a library so the integration tests drive exactly the code
//! `meshkit up` runs.

pub mod access_log;
pub mod app_process;
pub mod demo_app;
pub mod demo_traffic;
pub mod drain;
pub mod http_client;
pub mod local_mesh;
pub mod locate;
pub mod process;
pub mod spec_watch;
pub mod top;
pub mod xds;
