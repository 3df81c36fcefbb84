// Each test binary uses a different part of the shared support code.
#[allow(dead_code)]
pub mod api_double;
#[allow(dead_code)]
pub mod passes;
#[allow(dead_code)]
pub mod tenant;
