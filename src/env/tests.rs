//! Every variable parsed, overridden by code, and rejected when malformed with its name in the
//! error — through an injected lookup (the process environment is never touched).

use std::collections::HashMap;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn build(builder: ObserverBuilder, vars: &[(&str, &str)]) -> Result<Observer, BuildError> {
    builder.configure_from(&env(vars)).build()
}

fn variable_of(error: BuildError) -> String {
    match error {
        BuildError::InvalidVariable { variable, reason } => {
            assert!(
                error_text(&variable, &reason).contains(&variable),
                "the message names the variable"
            );
            variable
        }
        other => panic!("not an InvalidVariable: {other}"),
    }
}

fn error_text(variable: &str, reason: &str) -> String {
    BuildError::InvalidVariable {
        variable: variable.to_owned(),
        reason: reason.to_owned(),
    }
    .to_string()
}

/// A file under the temp directory holding `content`, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tower-observe-env-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn nothing_set_changes_nothing() {
    let observer = build(Observer::builder(), &[]).unwrap();
    assert!(observer
        .attached::<crate::endpoints::reset::ResetPart>()
        .is_none());
}

#[test]
fn empty_values_count_as_unset() {
    let vars = [
        (ADMIN_ADDR_ENV, " "),
        (RESET_TOKEN_FILE_ENV, ""),
        (LOGS_TOKEN_FILE_ENV, ""),
        (HISTORY_PATH_ENV, ""),
        (LOG_STORE_PATH_ENV, ""),
    ];
    build(Observer::builder(), &vars).unwrap();
}

#[test]
fn the_reset_token_file_is_read_trimmed_and_the_code_wins() {
    let file = TempFile::new("reset", "  s3cret-token\n");
    let vars = [(RESET_TOKEN_FILE_ENV, file.path())];
    let observer = build(Observer::builder(), &vars).unwrap();
    let part = observer
        .attached::<crate::endpoints::reset::ResetPart>()
        .expect("the reset route is on");
    assert!(part.token_is("s3cret-token"));
    // Either order: the code's token wins.
    for builder in [
        Observer::builder()
            .reset_token("code")
            .configure_from(&env(&vars)),
        Observer::builder()
            .configure_from(&env(&vars))
            .reset_token("code"),
    ] {
        let observer = builder.build().unwrap();
        let part = observer
            .attached::<crate::endpoints::reset::ResetPart>()
            .unwrap();
        assert!(part.token_is("code"));
    }
}

#[test]
fn an_unreadable_or_empty_token_file_names_the_variable_never_the_content() {
    let err = build(
        Observer::builder(),
        &[(RESET_TOKEN_FILE_ENV, "/nonexistent/tower-observe/token")],
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/nonexistent/tower-observe/token"), "{text}");
    assert_eq!(variable_of(err), RESET_TOKEN_FILE_ENV);

    let empty = TempFile::new("empty", " \n");
    let err = build(Observer::builder(), &[(RESET_TOKEN_FILE_ENV, empty.path())]).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(variable_of(err), RESET_TOKEN_FILE_ENV);

    // A directory cannot be read as a token: the error shows the path only.
    let dir = std::env::temp_dir();
    let err = build(
        Observer::builder(),
        &[(RESET_TOKEN_FILE_ENV, dir.to_str().unwrap())],
    )
    .unwrap_err();
    assert_eq!(variable_of(err), RESET_TOKEN_FILE_ENV);
}

#[test]
fn a_malformed_variable_fails_build_whatever_else_is_set() {
    // The first unusable variable is the one reported; the builder's other settings do not
    // hide it.
    #[cfg(feature = "admin")]
    {
        let err = Observer::builder()
            .dimension("tenant")
            .configure_from(&env(&[(ADMIN_ADDR_ENV, "localhost")]))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("localhost"), "{err}");
        assert_eq!(variable_of(err), ADMIN_ADDR_ENV);
    }
}

#[cfg(feature = "admin")]
#[test]
fn the_admin_address_is_parsed_and_the_code_wins() {
    let vars = [(ADMIN_ADDR_ENV, "0.0.0.0:9464")];
    let observer = build(Observer::builder(), &vars).unwrap();
    assert_eq!(observer.admin_addr(), Some(([0, 0, 0, 0], 9464).into()));
    let observer = build(Observer::builder(), &[(ADMIN_ADDR_ENV, "[::1]:9000")]).unwrap();
    assert_eq!(observer.admin_addr(), Some("[::1]:9000".parse().unwrap()));
    let code: std::net::SocketAddr = ([127, 0, 0, 1], 7000).into();
    for builder in [
        Observer::builder()
            .admin_addr(code)
            .configure_from(&env(&vars)),
        Observer::builder()
            .configure_from(&env(&vars))
            .admin_addr(code),
    ] {
        assert_eq!(builder.build().unwrap().admin_addr(), Some(code));
    }
    for bad in ["9464", "0.0.0.0", "0.0.0.0:99999", "host:80"] {
        let err = build(Observer::builder(), &[(ADMIN_ADDR_ENV, bad)]).unwrap_err();
        assert_eq!(variable_of(err), ADMIN_ADDR_ENV, "{bad}");
    }
    assert_eq!(build(Observer::builder(), &[]).unwrap().admin_addr(), None);
}

#[cfg(feature = "history")]
#[test]
fn the_history_path_turns_history_on_unless_the_code_configured_it() {
    let dir =
        std::env::temp_dir().join(format!("tower-observe-env-history-{}", std::process::id()));
    let path = dir.join("h.redb");
    let vars = [(HISTORY_PATH_ENV, path.to_str().unwrap())];
    {
        let observer = build(Observer::builder(), &vars).unwrap();
        let history = observer.history().expect("history is on");
        assert!(history.is_durable(), "kept in the file");
    }
    assert!(path.exists());
    for builder in [
        Observer::builder()
            .history(crate::history::HistoryOptions::in_memory())
            .configure_from(&env(&vars)),
        Observer::builder()
            .configure_from(&env(&vars))
            .history(crate::history::HistoryOptions::in_memory()),
    ] {
        let observer = builder.build().unwrap();
        assert!(
            !observer.history().unwrap().is_durable(),
            "the code's in-memory history"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "log-store")]
#[test]
fn the_log_store_path_and_token_file_fill_what_the_code_left() {
    use crate::log_store::LogStoreOptions;

    let dir = std::env::temp_dir().join(format!("tower-observe-env-logs-{}", std::process::id()));
    let path = dir.join("l.redb");
    let token = TempFile::new("logs", "logs-token\n");
    let vars = [
        (LOG_STORE_PATH_ENV, path.to_str().unwrap()),
        (LOGS_TOKEN_FILE_ENV, token.path()),
    ];
    {
        let observer = build(Observer::builder(), &vars).unwrap();
        let store = observer.log_store().expect("the log store is on");
        assert!(store.is_durable());
        assert!(store.token_is("logs-token"));
    }
    // The code's store wins over the path; its missing token is filled from the file.
    let observer = Observer::builder()
        .configure_from(&env(&vars))
        .log_store(LogStoreOptions::in_memory())
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    assert!(!store.is_durable());
    assert!(store.token_is("logs-token"));
    // The code's token wins over the file.
    let observer = Observer::builder()
        .log_store(LogStoreOptions::in_memory().token("code"))
        .configure_from(&env(&vars))
        .build()
        .unwrap();
    assert!(observer.log_store().unwrap().token_is("code"));
    // A token alone does not turn a store on.
    let observer = build(Observer::builder(), &[(LOGS_TOKEN_FILE_ENV, token.path())]).unwrap();
    assert!(observer.log_store().is_none());
    let err = build(
        Observer::builder(),
        &[(LOGS_TOKEN_FILE_ENV, "/nonexistent/logs")],
    )
    .unwrap_err();
    assert_eq!(variable_of(err), LOGS_TOKEN_FILE_ENV);
    let _ = std::fs::remove_dir_all(&dir);
}
