use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(imgbuild::cli::main())
}
