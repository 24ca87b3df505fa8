//! `assay`: the command-line entry point. It parses options (every flag also reads an
//! environment variable), sets up logging and threads, and hands each subcommand to
//! `commands::*`, which drive the library crates. Errors carry context with `anyhow` and end
//! the process with a non-zero status.

mod commands;
mod options;

use clap::Parser;
use options::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG").unwrap_or_else(|_| "warn".into())).with_writer(std::io::stderr).init();
    if let Some(n) = cli.global.threads {
        // candle and rayon size their pools from this variable on first use; nothing has
        // started a pool yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if let Err(e) = assay_kernels::cpu::CpuKernel::set_preferred(&cli.global.cpu_kernel) {
        eprintln!("error: --cpu-kernel: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Command::Models => commands::models::run(&cli.global),
        Command::Generate(args) => commands::generate::run(&cli.global, args),
        Command::Embed(args) => commands::embed::run(&cli.global, args),
        Command::Judge(args) => commands::judge::run(&cli.global, args),
        Command::Bench(args) => commands::bench::run(&cli.global, args),
        Command::Project(args) => commands::project::run(&cli.global, args),
        Command::Data(args) => commands::data::run(&cli.global, args),
        Command::Set(args) => commands::set::run(&cli.global, args),
        Command::Export(args) => commands::export::run(&cli.global, args),
        Command::Serve(args) => commands::serve::run(&cli.global, args),
        Command::Discover(args) => commands::discover::run(&cli.global, args),
        Command::Run(args) => commands::run::run(&cli.global, args),
        Command::Report(args) => commands::report::run(&cli.global, args),
        Command::Questions(args) => commands::expert::questions(&cli.global, args),
        Command::Answer(args) => commands::expert::answer(&cli.global, args),
        Command::Label(args) => commands::expert::label(&cli.global, args),
        Command::Refine(args) => commands::refine::run(&cli.global, args),
        Command::Optimise(args) => commands::optimise::run(&cli.global, args),
        Command::Gold(args) => commands::optimise::gold(&cli.global, args),
        Command::Critique(args) => commands::optimise::critique(&cli.global, args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
