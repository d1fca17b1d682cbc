//! Whether a Django project is an ASGI one, for `zdd init`: read from its files alone. A project is served as
//! ASGI (uvicorn as gunicorn's worker class) when its settings install Channels (or Daphne, Channels' server)
//! or set `ASGI_APPLICATION`, which only an ASGI project needs, or when it has an `asgi.py` and no `wsgi.py`.
//! Every `startproject` writes both files: an `asgi.py` alone says nothing.

use std::fs;
use std::path::Path;

/// An ASGI project's application, and why it was taken for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asgi {
    /// The callable, e.g. `mysite.asgi:application`.
    pub application: String,
    /// What in the project said so, for `zdd init`'s report.
    pub why: String,
}

/// What in the settings sources makes a project ASGI, if anything.
fn asgi_marker(settings_src: &str) -> Option<&'static str> {
    let code = settings_src.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let names = |app: &str| code.contains(&format!("'{app}'")) || code.contains(&format!("\"{app}\""));
    if names("channels") {
        Some("Channels is in INSTALLED_APPS")
    } else if names("daphne") {
        Some("Daphne is in INSTALLED_APPS")
    } else if code.lines().any(|l| l.trim_start().starts_with("ASGI_APPLICATION")) {
        Some("the settings set ASGI_APPLICATION")
    } else {
        None
    }
}

/// The ASGI application of the project in `app_dir` (the directory of `manage.py`) with `settings`, if the
/// project is an ASGI one; `has_wsgi`: whether it has a `wsgi.py` defining `application`.
pub(crate) fn detect(app_dir: &Path, settings: &str, has_wsgi: bool) -> Option<Asgi> {
    let application = super::find_callable(app_dir, settings, "asgi.py")?;
    // A settings package (`settings/{base,production}.py`) installs its apps in any of its modules.
    let mut sources: Vec<String> = super::module_file(app_dir, settings).into_iter().filter_map(read).collect();
    if let Some((package, _)) = settings.rsplit_once('.') {
        sources.extend(super::sibling_modules(app_dir, settings).iter().filter_map(|m| {
            let file = super::module_file(app_dir, m)?;
            read(file).filter(|_| m.starts_with(package))
        }));
    }
    let why = sources
        .iter()
        .find_map(|src| asgi_marker(src))
        .map(str::to_owned)
        .or_else(|| (!has_wsgi).then(|| "the project has an asgi.py and no wsgi.py".to_owned()))?;
    Some(Asgi { application, why })
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_daphne_or_asgi_application_mark_an_asgi_project() {
        assert_eq!(asgi_marker("INSTALLED_APPS = [\n    'channels',\n]\n"), Some("Channels is in INSTALLED_APPS"));
        assert_eq!(
            asgi_marker("INSTALLED_APPS = [\"daphne\", \"django.contrib.admin\"]"),
            Some("Daphne is in INSTALLED_APPS")
        );
        assert_eq!(
            asgi_marker("ASGI_APPLICATION = 'mysite.asgi.application'\n"),
            Some("the settings set ASGI_APPLICATION")
        );
        assert_eq!(asgi_marker("# 'channels',\nINSTALLED_APPS = ['django.contrib.admin']\n"), None);
    }
}
