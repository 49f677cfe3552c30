//! `rnats-server`: a NATS server, started with nats-server's flags.
//!
//! Parses the command line, sets up logging, binds the client port, and hands
//! everything else to [`rnats_runtime_tokio::app`].

use rnats_runtime_tokio::flags::{self, Command};
use rnats_runtime_tokio::{app, signal_cmd};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = flags::parse_args(&args).unwrap_or_else(|error| error.exit());
    match command {
        Command::Version => println!("{}", flags::version_string()),
        Command::Help => print!("{}", flags::usage()),
        Command::Signal { signal, target } => {
            if let Err(error) = signal_cmd::execute(&signal, target.as_deref()) {
                flags::die(&error.to_string());
            }
        }
        Command::Run(options) => std::process::exit(app::run(options)),
    }
}
