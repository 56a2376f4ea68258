//! Command line entry point: `serve` runs the service; `check`, `simulate` and `reload` are the
//! supervisor's tools for `routing.toml`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hotline::settings::Settings;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "hotline",
    version,
    about = "IVR and call routing for the Vilnius city hotline 19118"
)]
struct Cli {
    /// Settings file (default: ./hotline.toml when present). Env HOTLINE__SECTION__KEY overrides.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: SIP on UDP and TCP, media, routing.
    Serve,
    /// Validate a routing file before it goes live (default: the `routing` setting).
    /// Exit 1 with every problem as FILE:LINE: key: message.
    Check { file: Option<PathBuf> },
    /// What a routing change does: menus, keys, groups and opening hours added, removed or
    /// changed between OLD and NEW (comments and spacing do not count). Exit 1 when NEW is
    /// not fit to go live (its problems are printed as `check` prints them).
    Diff { old: PathBuf, new: PathBuf },
    /// Walk a caller's keys through the routing offline and print each step.
    Simulate {
        /// Routing file (default: the `routing` setting).
        #[arg(long)]
        routing: Option<PathBuf>,
        /// Choose this language at the language menu (lt, en, ru, pl).
        #[arg(long)]
        lang: Option<String>,
        /// A returning caller whose language is remembered (remember_language): greeted in
        /// it, no language menu; their first key may be change_language_key.
        #[arg(long, value_name = "LANG")]
        remembered: Option<String>,
        /// Local time of the call in the hotline's time zone, "YYYY-MM-DD HH:MM" (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Keys the caller presses, e.g. `2 1` or `21`; none: read them from the terminal.
        digits: Vec<String>,
    },
    /// Call statistics from the call records (definitions below).
    #[command(after_help = hotline::cdr::DEFINITIONS)]
    Stats {
        /// First local day (Europe/Vilnius), YYYY-MM-DD; default today.
        #[arg(long)]
        from: Option<String>,
        /// Day after the last one, YYYY-MM-DD (exclusive); default the day after --from.
        #[arg(long)]
        to: Option<String>,
        /// Group rows by enterprise, language, hour, day, outcome or menu_node (repeat or comma-separate).
        #[arg(long)]
        by: Vec<String>,
        /// table, csv or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Abandons shorter than this many seconds are not counted as abandoned (default: setting
        /// stats.short_abandon, 5).
        #[arg(long)]
        short_abandon: Option<u32>,
        /// Service level threshold in seconds (default: setting stats.sl_threshold, 20).
        #[arg(long)]
        sl_threshold: Option<u32>,
        /// Accept a missing database (it is created empty and every figure is zero); without
        /// it a missing SQLite file is an error naming the URL tried.
        #[arg(long)]
        allow_empty: bool,
    },
    /// Ask the running service to reload routing.toml through its HTTP API (POST /api/reload).
    /// Prints the new version's hash; exit 1 with every problem when the service refused the
    /// file (the running version stays) or could not be reached.
    Reload {
        /// Put the version applied before the current one back into the routing file (the
        /// replaced file is kept as FILE.before-rollback) and apply it.
        #[arg(long)]
        rollback: bool,
    },
    /// Call NUMBER through a carrier trunk from the running service (POST /api/trunks/NAME/calls), play a
    /// prompt when answered, hang up and report: exit 0 when answered, 1 with the SIP status
    /// and reason when not.
    Call {
        /// The trunk's name ([trunks.NAME] in the settings).
        #[arg(long)]
        trunk: String,
        /// The number to dial, as the carrier expects it.
        number: String,
        /// The prompt to play (a name in the prompts folder).
        #[arg(long, default_value = "welcome")]
        prompt: String,
        #[arg(long, default_value = "lt")]
        language: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service logs its work; the supervisor's tools only speak up when something is wrong.
    let default_filter = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = run(cli);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hotline: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_start(hotline::server::raise_worker_priority)
                .build()?;
            hotline::server::raise_worker_priority();
            runtime.block_on(hotline::server::run(settings))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { old, new } => {
            let lines = hotline::cli::diff::run(&old, &new)?;
            for line in &lines {
                println!("{line}");
            }
            println!(
                "{} -> {}: {} change(s)",
                old.display(),
                new.display(),
                lines
                    .iter()
                    .filter(|line| !line.starts_with("    "))
                    .count()
            );
            let credentials = settings.sip.credentials.as_deref();
            let fit = hotline::cli::check::run(&new, &settings.prompts, credentials);
            Ok(if fit {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check { file } => {
            let path = file.unwrap_or(settings.routing);
            let credentials = settings.sip.credentials.as_deref();
            let fit = hotline::cli::check::run(&path, &settings.prompts, credentials);
            Ok(if fit {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Simulate {
            routing,
            lang,
            remembered,
            at,
            digits,
        } => {
            let keys = hotline::cli::simulate::parse_keys(&digits)?;
            let keys = if keys.is_empty() {
                hotline::cli::simulate::Keys::Interactive
            } else {
                hotline::cli::simulate::Keys::Given(keys)
            };
            let routing = routing.unwrap_or(settings.routing);
            hotline::cli::simulate::run(hotline::cli::simulate::Options {
                routing: &routing,
                prompts: &settings.prompts,
                language: lang,
                remembered,
                at,
                keys,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats {
            from,
            to,
            by,
            format,
            short_abandon,
            sl_threshold,
            allow_empty,
        } => {
            let options = hotline::cli::stats::Options {
                database_url: settings.database.url,
                from,
                to,
                by,
                format,
                thresholds: hotline::cdr::Thresholds {
                    short_abandon_s: short_abandon.unwrap_or(settings.stats.short_abandon),
                    sl_threshold_s: sl_threshold.unwrap_or(settings.stats.sl_threshold),
                },
            };
            hotline::cli::stats::refuse_missing_database(&options.database_url, allow_empty)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            print!("{}", runtime.block_on(hotline::cli::stats::run(options))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Call {
            trunk,
            number,
            prompt,
            language,
        } => {
            use hotline::cli::call::{self, Order, Outcome};
            let options = hotline::cli::reload::Options {
                pid_file: &settings.pid_file,
                listen: settings.http.listen,
                token: settings.http.token.as_deref(),
            };
            let order = Order {
                trunk: &trunk,
                number: &number,
                language: &language,
                prompt: &prompt,
            };
            match call::run(&options, &order)? {
                Outcome::Answered {
                    answered_after_ms,
                    talked_ms,
                } => {
                    println!(
                        "answered after {:.1} s; {prompt} played; hung up after {:.1} s",
                        answered_after_ms as f64 / 1000.0,
                        talked_ms as f64 / 1000.0
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Outcome::Failed { status, reason } => {
                    println!("not answered: {status} {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Reload { rollback } => {
            use hotline::cli::reload::{self, Answer};
            let options = reload::Options {
                pid_file: &settings.pid_file,
                listen: settings.http.listen,
                token: settings.http.token.as_deref(),
            };
            let answer = if rollback {
                let (version, answer) = reload::rollback(&options, &settings.routing)?;
                println!(
                    "{}: restored version {} (applied {})",
                    settings.routing.display(),
                    version.hash,
                    version.applied
                );
                answer
            } else {
                reload::run(&options)?
            };
            match answer {
                Answer::Applied { hash } => {
                    println!("routing reloaded: version {hash} is active for new calls");
                    Ok(ExitCode::SUCCESS)
                }
                Answer::Refused { problems } => {
                    for problem in &problems {
                        println!("{problem}");
                    }
                    eprintln!(
                        "hotline: the service refused the routing file ({} problem(s)); the \
                         running version stays",
                        problems.len()
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
