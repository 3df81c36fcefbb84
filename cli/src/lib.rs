//! `gantry`, the command line: `render` and its bundle folders
//! (`bundle_dir`), `pki`, `token`, `crd`, day-2 access and cloud-init
//! (`access`, `day2`), and `run`, which starts the operator. It is the only
//! crate that reads or writes local files and prints.
//!
//! It must never decide what a tenant's objects are (the renderer does) or
//! how a tenant is reconciled (the controller does): it parses flags, calls
//! them, and writes what they return. Each subcommand returns the exit code
//! for success, or a [`CliError`] whose one-line message names the flag and
//! value at fault.

use std::process::ExitCode;

/// `println!` that returns [`CliError::Stdout`] instead of panicking when
/// stdout cannot be written (a full disk, `>/dev/full`). A closed pipe
/// (`| head -1`) ends a one-shot command quietly: main restores SIGPIPE.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::CliError::Stdout)
    }};
}

/// Writes `bytes` to stdout; see [`say!`].
pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(CliError::Stdout)
}

pub mod access;
pub mod backup;
pub mod bundle_dir;
pub mod cloud_init;
pub mod day2;
pub mod konnectivity;
pub mod pki;
pub mod render;
pub mod run;
pub mod token;

/// Exit status 2: the input was wrong (a flag, a file, an unwritable `--out`).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit status 1: the command ran and found a problem (e.g. an expired certificate).
const EXIT_FAILED: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input to the PKI crate, whose field names are the flags' names.
    #[error("--{} {:?}: {}", .0.field, .0.value, .0.reason)]
    InvalidInput(#[from] gantry_pki::InvalidInput),
    #[error(transparent)]
    Pki(gantry_pki::PkiError),
    #[error(transparent)]
    BundleDir(#[from] crate::bundle_dir::BundleDirError),
    #[error(transparent)]
    Spec(#[from] gantry_controller::resolve::SpecError),
    #[error(transparent)]
    Render(#[from] gantry_renderer::RenderError),
    #[error("{flag} {value:?}: {reason}")]
    BadFile {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Day2(#[from] crate::access::Day2Error),
    #[error(transparent)]
    Run(#[from] gantry_controller::operator::RunError),
    #[error(transparent)]
    Backup(#[from] gantry_backup::Error),
    #[error("{0}")]
    Failed(String),
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

impl From<gantry_pki::PkiError> for CliError {
    fn from(error: gantry_pki::PkiError) -> Self {
        match error {
            gantry_pki::PkiError::InvalidInput(input) => CliError::InvalidInput(input),
            other => CliError::Pki(other),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Failed(_) | CliError::Stdout(_) | CliError::Run(_) => {
                ExitCode::from(EXIT_FAILED)
            }
            // A bundle that cannot be read is bad input; the service cluster
            // or a tenant that fails is not.
            CliError::Day2(e) if !matches!(e, crate::access::Day2Error::Bundle { .. }) => {
                ExitCode::from(EXIT_FAILED)
            }
            // A peer that refuses or fails, or data that is damaged, is not
            // the command line's fault.
            CliError::Backup(e) if e.category() != gantry_backup::Category::BadInput => {
                ExitCode::from(EXIT_FAILED)
            }
            // A template or chart that fails is gantry's bug, not bad input.
            CliError::Render(e)
                if !matches!(e, gantry_renderer::RenderError::InvalidField { .. }) =>
            {
                ExitCode::from(EXIT_FAILED)
            }
            _ => ExitCode::from(EXIT_BAD_INPUT),
        }
    }
}

/// Reads a file named by a flag; the error names the flag and the path. At
/// most `limit` bytes are read: `/dev/zero` never fills memory.
fn read_flag_file(
    flag: &'static str,
    path: &std::path::Path,
    limit: u64,
) -> Result<Vec<u8>, CliError> {
    bundle_dir::at::read_user_file(path, limit).map_err(|e| CliError::BadFile {
        flag,
        value: path.display().to_string(),
        reason: match e {
            bundle_dir::at::AtError::Io { error, .. } => error.to_string(),
            other => other.to_string(),
        },
    })
}
