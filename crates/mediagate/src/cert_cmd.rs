//! `mediagate cert ca|issue|revoke`: the dispatcher cluster's certificates
//! (`mediagate_link::pki`), with what to do next printed for the operator.
//!
//! What it does not: copy files to other hosts or signal running nodes.

use std::process::ExitCode;

use mediagate_link::pki;

use crate::cli::CertCommand;

/// Runs one `mediagate cert` subcommand; problems go to stderr with status 1.
pub fn run(cmd: CertCommand) -> ExitCode {
    match run_inner(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mediagate cert: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(cmd: CertCommand) -> Result<(), pki::PkiError> {
    match cmd {
        CertCommand::Ca { dir, name } => {
            let name = match name {
                Some(name) => name,
                None => pki::default_ca_name()?,
            };
            pki::create_ca(&dir, &name)?;
            println!(
                "CA \"{name}\" created: {} and {} (keep the key off the nodes)",
                dir.join(pki::CA_CERT).display(),
                dir.join(pki::CA_KEY).display()
            );
            println!(
                "next: mediagate cert issue --ca {} --dir NODE_DIR NAME",
                dir.display()
            );
        }
        CertCommand::Issue { ca, dir, name } => {
            pki::issue(&ca, &dir, &name)?;
            println!(
                "certificate for \"{name}\" issued into {}: ca.pem, cert.pem, key.pem{}; use it as --tls-dir {}",
                dir.display(),
                if dir.join(pki::CRL).exists() { ", crl.pem" } else { "" },
                dir.display()
            );
        }
        CertCommand::Revoke { ca, cert } => {
            let r = pki::revoke(&ca, &cert)?;
            if r.already {
                println!(
                    "{} (serial {}) was already revoked; {} re-issued ({} entries)",
                    cert.display(),
                    r.serial,
                    r.crl.display(),
                    r.entries
                );
            } else {
                println!(
                    "{} (serial {}) revoked; {} now lists {} certificate(s)",
                    cert.display(),
                    r.serial,
                    r.crl.display(),
                    r.entries
                );
            }
            println!(
                "copy {} into every node's --tls-dir as crl.pem (a node uses it when present) and restart the dispatchers",
                r.crl.display()
            );
        }
    }
    Ok(())
}
