//! zdd's step kinds, one module per kind. Each declares its fields ([`zdd_engine::schema::KindSpec`]), parses
//! them once at validation into its typed settings ([`zdd_engine::settings::TypedKind`]), and from those says
//! what it previews, what it does through the host; its undo acts on the facts its run recorded alone.

use zdd_engine::kind::Kinds;

mod archive;
pub mod canary;
pub mod collectstatic;
mod common;
pub mod deploy_check;
pub mod django;
pub mod doctor;
pub mod drain_stop;
pub mod envfile;
pub mod envsnap;
pub mod exec;
pub mod fingerprint;
pub mod health_gate;
pub mod http;
pub mod image;
pub mod log_check;
pub mod maintenance;
pub mod manage;
pub mod migrate;
pub mod origin;
pub mod packages;
pub mod preflight;
pub mod probe;
pub mod proxy;
pub mod python_env;
pub mod release;
pub mod requirements;
pub mod service;
pub mod smoke;
pub mod static_assets;
pub mod symlink;
pub mod templates;
#[cfg(test)]
mod testing;
pub mod worker;

/// Every built-in kind.
pub fn builtin() -> Kinds {
    let mut kinds = Kinds::new();
    kinds.register_typed(release::Release);
    kinds.register_typed(python_env::PythonEnv);
    kinds.register_typed(django::Django);
    kinds.register_typed(collectstatic::Collectstatic);
    kinds.register_typed(deploy_check::DeployCheck);
    kinds.register_typed(migrate::Migrate);
    kinds.register_typed(service::Service);
    kinds.register_typed(health_gate::HealthGate);
    kinds.register_typed(proxy::ProxySwitch);
    kinds.register_typed(canary::Canary);
    kinds.register_typed(smoke::Smoke);
    kinds.register_typed(log_check::LogCheck);
    kinds.register_typed(symlink::Symlink);
    kinds.register_typed(drain_stop::DrainStop);
    kinds.register_typed(packages::Packages);
    kinds.register_typed(exec::Exec);
    kinds.register_typed(http::Http);
    kinds.register_typed(worker::Worker);
    kinds.register_typed(worker::WorkerRetire);
    kinds.register_typed(worker::Beat);
    kinds.register_typed(image::Image);
    kinds.register_typed(maintenance::Maintenance);
    kinds
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Functions that may read a step's fields by name: the kinds' checks at validation, and the builders of
    /// their settings (`settings`, `from_fields`, `*_settings`), which run once, at validation too.
    fn reads_fields_at_validation(function: &str) -> bool {
        matches!(function, "check" | "settings" | "from_fields") || function.ends_with("_settings")
    }

    /// The field reads outside those functions, as `file:line: text`.
    fn field_reads_elsewhere(file: &Path, out: &mut Vec<String>) {
        let text = std::fs::read_to_string(file).unwrap();
        let mut function = String::new();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            // Unit tests build steps from fields; they are not run-time code.
            if code.starts_with("#[cfg(test)]") && text.lines().nth(n + 1).is_some_and(|l| l.contains("mod tests")) {
                break;
            }
            if code.starts_with("//") || code.starts_with("use ") {
                continue;
            }
            if let Some((_, rest)) = code.split_once("fn ") {
                function = rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or_default().to_owned();
            }
            let reads = code.contains(".fields") || code.contains("Fields") || code.contains("SettingsCtx");
            if reads && !reads_fields_at_validation(&function) {
                out.push(format!("{}:{}: {code}", file.display(), n + 1));
            }
        }
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("testing.rs") {
                out.push(path);
            }
        }
    }

    /// Each kind parses its fields once, at validation, into its settings: preview, run, preflight and stop
    /// read those settings, never a field by name.
    #[test]
    fn no_field_is_read_at_run_time() {
        let mut files = Vec::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        assert!(files.len() > 20, "found the kinds' sources");
        let mut reads = Vec::new();
        for file in &files {
            field_reads_elsewhere(file, &mut reads);
        }
        assert!(reads.is_empty(), "fields read outside validation:\n{}", reads.join("\n"));
    }
}
