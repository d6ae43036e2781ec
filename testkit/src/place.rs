//! The place program's side: how a place tells the driver what became of its case.

use std::process::ExitCode;

/// Prints the outcome of `case` at this place in the form the driver checks (`CASE: ok` on
/// stdout, or `CASE failed: MESSAGE` on stderr) and returns `result`, for the place's main to
/// return in turn.
pub fn report(case: &str, result: Result<(), String>) -> Result<(), String> {
    match &result {
        Ok(()) => println!("{case}: ok"),
        Err(message) => eprintln!("{case} failed: {message}"),
    }
    result
}

/// The exit status of a place program after `what` (its case, named as the output should
/// name it) ended with `result`: success, or failure after `WHAT failed: MESSAGE` on stderr.
///
/// For place programs that print `CASE: ok` themselves (one line per case they run).
pub fn exit_code(what: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{what} failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A place program for [`Suite::main`](crate::Suite::main) that runs its case under Atoll's
/// runtime (`atoll::run`: the calling crate needs `atoll`). The cases are the names of `async
/// fn`s without arguments that return `Result<(), String>`, each case named after its
/// function; the program [`report`]s the outcome, an unknown name being an error.
///
/// ```ignore
/// SUITE.main(atoll_testkit::runtime_place!(fifo, select), trials)
/// ```
#[macro_export]
macro_rules! runtime_place {
    ($($case:ident),+ $(,)?) => {
        |case: ::std::string::String| {
            ::atoll::run(move || async move {
                let result = match case.as_str() {
                    $(::std::stringify!($case) => $case().await,)+
                    other => ::std::result::Result::Err(::std::format!("unknown case {other}")),
                };
                $crate::report(&case, result)
            })
        }
    };
}
