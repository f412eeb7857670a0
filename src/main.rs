//! Command line: run the gateway, check a configuration, hash a password.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: measured in benches/load (see BENCHMARKS.md); the request path allocates small,
// short-lived buffers on every request, where glibc's malloc cost the most.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use authgate::config::{Backend, Config, process_env};
use authgate::store::redis::RedisStore;
use authgate::store::users_file::UsersFile;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "Reverse-proxy authentication gateway"
)]
struct Cli {
    /// Configuration file. Without it, `conf/authgate.toml` if present, else embedded defaults.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration (and its users file); exit non-zero naming the bad key.
    CheckConfig,
    /// Read a password on stdin and print its argon2id hash, for the users file.
    HashPassword,
    /// Manage users in the configured store.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Load `store.users_file` into Redis: organizations, users and the email index.
    Import,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    authgate::telemetry::init();
    match cli.command {
        None => run(cli.config.as_deref()),
        Some(Command::CheckConfig) => check_config(cli.config.as_deref()),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Users {
            command: UsersCommand::Import,
        }) => import_users(cli.config.as_deref()),
    }
}

fn config_path(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let default = PathBuf::from("conf/authgate.toml");
            default.exists().then_some(default)
        }
    }
}

fn load(given: Option<&Path>) -> Result<Config, String> {
    let path = config_path(given);
    let mut config = Config::load(path.as_deref(), &process_env).map_err(|e| e.to_string())?;
    // Certificates, keys and CA files: missing, unreadable or mismatched ones are refused.
    let tls_warnings = authgate::tls::check(&config).map_err(|e| e.to_string())?;
    config.warnings.extend(tls_warnings);
    // The memory store serves from the users file; with Redis it is only an import source.
    if matches!(config.store.backend, Backend::Memory) || config.store.users_file.exists() {
        UsersFile::load(&config.store.users_file).map_err(|e| e.to_string())?;
    }
    Ok(config)
}

fn run(given: Option<&Path>) -> ExitCode {
    let config = match load(given) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authgate: {e}");
            return ExitCode::from(2);
        }
    };
    match authgate::server::run(config, config_path(given)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(given: Option<&Path>) -> ExitCode {
    let shown = config_path(given)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded defaults".into());
    match load(given) {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            println!("{shown}: configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn import_users(given: Option<&Path>) -> ExitCode {
    let result = load(given).and_then(|config| {
        let Backend::Redis(settings) = &config.store.backend else {
            return Err("`users import` needs store.backend = \"redis\" (the memory store reads the users file directly)".into());
        };
        let file = UsersFile::load(&config.store.users_file).map_err(|e| e.to_string())?;
        let store = RedisStore::connect(settings).map_err(|e| e.to_string())?;
        store
            .block_on(store.import(&file))
            .and_then(|r| r)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok((users, orgs)) => {
            println!("imported {users} users and {orgs} organizations");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("authgate: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    // One trailing newline is the terminal's, not the password's.
    let password = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if password.is_empty() {
        eprintln!("authgate: empty password on stdin");
        return ExitCode::FAILURE;
    }
    match authgate::password::hash_blocking(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::FAILURE
        }
    }
}
