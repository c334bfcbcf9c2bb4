//! Shell completion.
//!
//! - `mlrollout completion <shell>` prints a completion script for `mlrollout` (clap's
//!   generator: bash, zsh, fish, PowerShell, elvish).
//! - As a kubectl plugin: kubectl (1.26 and later) completes `kubectl mlrollout …` by running
//!   an executable named `kubectl_complete-mlrollout` — a link to this binary — with the words
//!   after `mlrollout`, the last one being the word typed so far. The answer is cobra's: one
//!   candidate a line (`value<TAB>description`), then `:<directive>`. Names of ModelDeployments
//!   and namespaces come from the cluster of the kubeconfig.

use std::process::ExitCode;

use clap::Command;

/// The name kubectl looks for when it completes our plugin.
pub const KUBECTL_COMPLETE_NAME: &str = "kubectl_complete-mlrollout";

/// cobra's `ShellCompDirective` values (kubectl reads them from the last line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Let the shell complete file names.
    Files = 0,
    /// Completion failed (the cluster could not be asked).
    Error = 1,
    /// Only the candidates given, no file names.
    NoFiles = 4,
}

/// What the word being typed should become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// These candidates (`value\tdescription`).
    Static(Vec<String>),
    /// A ModelDeployment in this namespace (`None`: the kubeconfig's).
    ResourceName(Option<String>),
    /// A namespace.
    Namespace,
    /// Whatever the shell offers (file names, or free text).
    Anything,
}

/// Reads the words before the one being typed: the subcommand, flags waiting for a value, the
/// namespace given and how many positional values there are.
#[derive(Default)]
struct Seen<'a> {
    sub: Option<&'a Command>,
    pending_value: Option<&'a clap::Arg>,
    namespace: Option<String>,
    positionals: usize,
}

impl<'a> Seen<'a> {
    fn read(root: &'a Command, words: &[String]) -> Option<Seen<'a>> {
        let mut seen = Seen::default();
        for word in words {
            let scope = seen.sub.unwrap_or(root);
            if let Some(arg) = seen.pending_value.take() {
                seen.note_value(arg, word);
            } else if let Some(flag) = word.strip_prefix("--").filter(|f| !f.is_empty()) {
                let (name, value) = match flag.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (flag, None),
                };
                let arg = scope.get_arguments().find(|a| a.get_long() == Some(name));
                seen.note_flag(arg, value);
            } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
                let mut chars = shorts.chars();
                let first = chars.next();
                let rest = chars.as_str();
                let arg = scope.get_arguments().find(|a| a.get_short() == first);
                seen.note_flag(arg, (!rest.is_empty()).then_some(rest));
            } else if seen.sub.is_none() {
                seen.sub = Some(root.find_subcommand(word)?);
            } else {
                seen.positionals += 1;
            }
        }
        Some(seen)
    }

    fn note_flag(&mut self, arg: Option<&'a clap::Arg>, attached: Option<&str>) {
        let Some(arg) = arg.filter(|a| a.get_action().takes_values()) else {
            return;
        };
        match attached {
            Some(value) => self.note_value(arg, value),
            None => self.pending_value = Some(arg),
        }
    }

    fn note_value(&mut self, arg: &clap::Arg, value: &str) {
        if arg.get_id() == "namespace" {
            self.namespace = Some(value.to_string());
        }
    }
}

/// What to offer for the last of `words` (the words after `mlrollout`), from the command tree
/// alone. Pure: listing names from the cluster is [`complete`]'s part.
pub fn want(root: &Command, words: &[String]) -> Want {
    let (typed, before) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", words),
    };
    let Some(seen) = Seen::read(root, before) else {
        return Want::Static(Vec::new());
    };
    if let Some(arg) = seen.pending_value {
        return if arg.get_id() == "namespace" {
            Want::Namespace
        } else {
            Want::Anything
        };
    }
    let scope = seen.sub.unwrap_or(root);
    if typed.starts_with('-') {
        return Want::Static(flags(scope, typed));
    }
    let Some(sub) = seen.sub else {
        return Want::Static(subcommands(root, typed));
    };
    let positional = sub.get_positionals().nth(seen.positionals).or_else(|| {
        sub.get_positionals()
            .last()
            .filter(|a| matches!(a.get_action(), clap::ArgAction::Append))
    });
    match positional {
        Some(arg) if arg.get_id() == "name" && seen.positionals == 0 => {
            Want::ResourceName(seen.namespace)
        }
        Some(_) => Want::Anything,
        None => Want::Static(Vec::new()),
    }
}

fn described(value: &str, help: Option<&clap::builder::StyledStr>) -> String {
    match help {
        // First line only: a candidate's description is one line.
        Some(help) => {
            let help = help.to_string();
            format!("{value}\t{}", help.lines().next().unwrap_or_default())
        }
        None => value.to_string(),
    }
}

fn subcommands(root: &Command, typed: &str) -> Vec<String> {
    root.get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name().starts_with(typed))
        .map(|c| described(c.get_name(), c.get_about()))
        .collect()
}

fn flags(scope: &Command, typed: &str) -> Vec<String> {
    let mut out: Vec<String> = scope
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| Some((a.get_long()?, a.get_help())))
        .map(|(long, help)| (format!("--{long}"), help))
        .filter(|(flag, _)| flag.starts_with(typed))
        .map(|(flag, help)| described(&flag, help))
        .collect();
    if "--help".starts_with(typed) {
        out.push("--help\tPrint help".into());
    }
    out
}

/// The answer in cobra's format.
pub fn answer(candidates: &[String], directive: Directive) -> String {
    let mut out = String::new();
    for candidate in candidates {
        out.push_str(candidate);
        out.push('\n');
    }
    out.push_str(&format!(":{}\n", directive as u8));
    out
}

/// Answers kubectl's completion request for `words`, asking the cluster for names when the
/// word is one (within a few seconds: a shell waits for this).
pub fn complete(root: &Command, words: &[String]) -> ExitCode {
    let typed = words.last().map(String::as_str).unwrap_or_default();
    let text = match want(root, words) {
        Want::Static(candidates) => answer(&candidates, Directive::NoFiles),
        Want::Anything => answer(&[], Directive::Files),
        Want::ResourceName(namespace) => from_cluster(Listing::Resources(namespace), typed),
        Want::Namespace => from_cluster(Listing::Namespaces, typed),
    };
    match super::output::print(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

enum Listing {
    Resources(Option<String>),
    Namespaces,
}

fn from_cluster(listing: Listing, typed: &str) -> String {
    super::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let names = match runtime {
        Ok(runtime) => runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), list(listing))
                .await
                .map_err(|_| "the API server did not answer within 5s".to_string())?
        }),
        Err(e) => Err(e.to_string()),
    };
    match names {
        Ok(names) => {
            let matching: Vec<String> =
                names.into_iter().filter(|n| n.starts_with(typed)).collect();
            answer(&matching, Directive::NoFiles)
        }
        Err(e) => {
            eprintln!("mlrollout: cannot list completions: {e}");
            answer(&[], Directive::Error)
        }
    }
}

async fn list(listing: Listing) -> Result<Vec<String>, String> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::Api;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| e.to_string())?;
    match listing {
        Listing::Resources(namespace) => {
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            names_of(Api::<crate::api::ModelDeployment>::namespaced(
                client, &namespace,
            ))
            .await
        }
        Listing::Namespaces => names_of(Api::<Namespace>::all(client)).await,
    }
}

/// The names of the objects `api` lists (metadata only).
async fn names_of<K>(api: kube::Api<K>) -> Result<Vec<String>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api
        .list_metadata(&kube::api::ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect())
}

/// `mlrollout completion <shell>`: the script for `shell`, for the command named `bin`.
pub fn script(shell: clap_complete::Shell, root: &mut Command) -> ExitCode {
    let mut buffer = Vec::new();
    clap_complete::generate(shell, root, "mlrollout", &mut buffer);
    match super::output::print(&String::from_utf8_lossy(&buffer)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::CommandFactory;

    use super::*;

    fn want_for(line: &str) -> Want {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        want(&crate::cli::Cli::command(), &words)
    }

    fn values(want: Want) -> Vec<String> {
        match want {
            Want::Static(c) => c
                .into_iter()
                .map(|c| c.split('\t').next().unwrap().to_string())
                .collect(),
            other => panic!("not static: {other:?}"),
        }
    }

    #[test]
    fn subcommands_flags_names_and_namespaces() {
        assert_eq!(values(want_for("pro")), ["proxy", "promote"]);
        assert_eq!(values(want_for("prom")), ["promote"]);
        assert!(values(want_for("")).contains(&"status".to_string()));
        assert!(
            !values(want_for("")).contains(&"__complete".to_string()),
            "hidden"
        );
        assert_eq!(want_for("promote "), Want::ResourceName(None));
        assert_eq!(
            want_for("promote -n fraud "),
            Want::ResourceName(Some("fraud".into()))
        );
        assert_eq!(
            want_for("status --namespace=ml fr"),
            Want::ResourceName(Some("ml".into()))
        );
        assert_eq!(want_for("abort -n "), Want::Namespace);
        assert_eq!(values(want_for("promote --f")), ["--full"]);
        assert!(values(want_for("status -")).contains(&"--watch".to_string()));
        // No second name; a flag's value and file arguments are left to the shell.
        assert_eq!(values(want_for("promote fraud ")), Vec::<String>::new());
        assert_eq!(want_for("status --request-timeout "), Want::Anything);
        assert_eq!(want_for("check "), Want::Anything);
        assert_eq!(want_for("check a.yaml "), Want::Anything);
        assert_eq!(values(want_for("nosuch ")), Vec::<String>::new());
    }

    #[test]
    fn answers_in_cobras_format() {
        assert_eq!(
            answer(&["promote\tPromote".into()], Directive::NoFiles),
            "promote\tPromote\n:4\n"
        );
        assert_eq!(answer(&[], Directive::Files), ":0\n");
    }

    #[test]
    fn scripts_for_every_shell_name_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buffer = Vec::new();
            clap_complete::generate(
                shell,
                &mut crate::cli::Cli::command(),
                "mlrollout",
                &mut buffer,
            );
            let text = String::from_utf8(buffer).unwrap();
            for sub in ["promote", "status", "drift", "--watch"] {
                assert!(text.contains(sub), "{shell}: {sub}");
            }
        }
    }
}
