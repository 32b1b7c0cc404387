//! The `lifeboat` binary; everything it does is in [`lifeboat::cli`].

fn main() -> std::process::ExitCode {
    lifeboat::cli::main()
}
