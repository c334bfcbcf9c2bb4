fn main() -> std::process::ExitCode {
    mlrollout::cli::main()
}
