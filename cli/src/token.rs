//! `gantry token create` and `gantry token sign`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use gantry_pki::{BootstrapToken, jws};

use super::{CliError, read_flag_file};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a fresh bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) from the OS CSPRNG.
    Create,
    /// Print the `jws-kubeconfig-<id>` value that signs a cluster-info kubeconfig.
    Sign {
        /// The token, ID.SECRET.
        #[arg(long, value_name = "ID.SECRET")]
        token: String,
        /// The cluster-info kubeconfig, exactly as published in kube-public/cluster-info.
        #[arg(long, value_name = "KUBECONFIG")]
        file: PathBuf,
    },
}

pub fn run(command: TokenCommand) -> Result<ExitCode, CliError> {
    match command {
        TokenCommand::Create => say!("{}", BootstrapToken::generate().expose())?,
        TokenCommand::Sign { token, file } => {
            let token = BootstrapToken::parse(&token)?;
            let kubeconfig =
                read_flag_file("--file", &file, crate::bundle_dir::at::MAX_FILE_BYTES)?;
            say!("{}", jws::sign_cluster_info(&kubeconfig, &token))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
