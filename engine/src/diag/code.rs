//! Every diagnostic code zdd emits, as one enum: a misspelled code does not compile, and the list that
//! `zdd explain --list` prints and the docs test checks against the book is this one.
//!
//! A code's text (`zdd::unknown-step`) is stable: scripts match on it and the book explains it by that name.
//! To add a code: one line in the list below and one row in the book (plan-language or troubleshooting chapter).

use std::fmt;
use std::str::FromStr;

macro_rules! codes {
    ($($variant:ident => $text:literal,)*) => {
        /// A stable diagnostic code; [`Code::as_str`] is its `zdd::...` text, and codes sort by it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in the book's order.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The stable text, e.g. `zdd::unknown-step`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => concat!("zdd::", $text),)*
                }
            }
        }
    };
}

codes! {
    KdlSyntax => "kdl-syntax",
    PlanNotFound => "plan-not-found",
    IncludeNotFound => "include-not-found",
    IncludeCycle => "include-cycle",
    UnknownNode => "unknown-node",
    UnknownProperty => "unknown-property",
    UnknownField => "unknown-field",
    UnknownKind => "unknown-kind",
    MissingKind => "missing-kind",
    MissingPlan => "missing-plan",
    MisplacedNode => "misplaced-node",
    ZddVersion => "zdd-version",
    BadVersionRequirement => "bad-version-requirement",
    DuplicateNode => "duplicate-node",
    DuplicateStep => "duplicate-step",
    DuplicateField => "duplicate-field",
    DuplicateVar => "duplicate-var",
    BadStepName => "bad-step-name",
    BadVarName => "bad-var-name",
    ReservedVar => "reserved-var",
    MissingArgument => "missing-argument",
    ExtraArgument => "extra-argument",
    MissingField => "missing-field",
    MissingProperty => "missing-property",
    UnexpectedBlock => "unexpected-block",
    EmptyValue => "empty-value",
    WrongType => "wrong-type",
    BadDuration => "bad-duration",
    BadPort => "bad-port",
    BadUrl => "bad-url",
    BadInt => "bad-int",
    BadBool => "bad-bool",
    BadEnum => "bad-enum",
    BadPath => "bad-path",
    BadConfigWord => "bad-config-word",
    BadSlot => "bad-slot",
    RepeatEmpty => "repeat-empty",
    RepeatDuplicateItem => "repeat-duplicate-item",
    RepeatNameCollision => "repeat-name-collision",
    RepeatVar => "repeat-var",
    RepeatBody => "repeat-body",
    RepeatTooLarge => "repeat-too-large",
    BadHost => "bad-host",
    DuplicateHost => "duplicate-host",
    UnknownHost => "unknown-host",
    UnknownRole => "unknown-role",
    HostAndRole => "host-and-role",
    UnknownStep => "unknown-step",
    WrongStepKind => "wrong-step-kind",
    DependencyCycle => "dependency-cycle",
    CommitBeforeCutover => "commit-before-cutover",
    CommitWhileOldRuns => "commit-while-old-runs",
    UndefinedVar => "undefined-var",
    BadTemplate => "bad-template",
    VarNoValue => "var-no-value",
    VarCycle => "var-cycle",
    BadVarArg => "bad-var-arg",
    UnknownVar => "unknown-var",
    TooDeep => "too-deep",
    SlashdashRun => "slashdash-run",
    BadName => "bad-name",
    BadSubPath => "bad-sub-path",
    UnsafeShellValue => "unsafe-shell-value",
    ExecNothingToRun => "exec-nothing-to-run",
    ExecRunAndCommand => "exec-run-and-command",
    ExecUndoAndUndoCommand => "exec-undo-and-undo-command",
    ExecStopAndStopCommand => "exec-stop-and-stop-command",
    ExecEmptyCommand => "exec-empty-command",
    ExecBadEnv => "exec-bad-env",
    ReleaseKeep => "release-keep",
    EnvKeyRemoved => "env-key-removed",
    HealthTarget => "health-target",
    HealthJson => "health-json",
    ServiceLane => "service-lane",
    ProxyLanes => "proxy-lanes",
    ProxyTls => "proxy-tls",
    ProxyCaddy => "proxy-caddy",
    CanarySetting => "canary-setting",
    HttpBadHeader => "http-bad-header",
    HttpBadStatus => "http-bad-status",
    MigrateLockRetries => "migrate-lock-retries",
    MigrateAdvisoryLock => "migrate-advisory-lock",
    MaintenanceUnavailable => "maintenance-unavailable",
    BeatArgs => "beat-args",
    DeployCheckAllow => "deploy-check-allow",
    DeployCheckOrigin => "deploy-check-origin",
    DeployCheckIssues => "deploy-check-issues",
    DeployCheckDebug => "deploy-check-debug",
    DeployCheckAllowedHosts => "deploy-check-allowed-hosts",
    DeployCheckProxySslHeader => "deploy-check-proxy-ssl-header",
    DeployCheckCsrfOrigin => "deploy-check-csrf-origin",
    PreflightSource => "preflight-source",
    PreflightSettings => "preflight-settings",
    PreflightMissing => "preflight-missing",
    PreflightUnreadable => "preflight-unreadable",
    PreflightProgram => "preflight-program",
    PreflightUnreachable => "preflight-unreachable",
    PreflightNginxUser => "preflight-nginx-user",
    PreflightNoGunicorn => "preflight-no-gunicorn",
    PreflightDocker => "preflight-docker",
    PreflightNoUv => "preflight-no-uv",
    StateFormatNewer => "state-format-newer",
    SavedPlanInvalid => "saved-plan-invalid",
    SavedPlanNewer => "saved-plan-newer",
    SavedPlanStale => "saved-plan-stale",
    DoctorStateDir => "doctor-state-dir",
    DoctorStaleLock => "doctor-stale-lock",
    DoctorLockHeld => "doctor-lock-held",
    DoctorInterrupted => "doctor-interrupted",
    DoctorStaged => "doctor-staged",
    DoctorLiveGone => "doctor-live-gone",
    DoctorUnwritable => "doctor-unwritable",
    DoctorPortInUse => "doctor-port-in-use",
    DoctorUnreachable => "doctor-unreachable",
    DoctorDiskSpace => "doctor-disk-space",
    DoctorDatabase => "doctor-database",
}

impl Code {
    /// Every code, in the book's order.
    pub fn all() -> impl Iterator<Item = Code> {
        Self::ALL.iter().copied()
    }

    /// The text without the `zdd::` prefix, e.g. `unknown-step`.
    pub fn name(self) -> &'static str {
        &self.as_str()["zdd::".len()..]
    }
}

// Sorted by text, as the codes sorted when they were strings (tests sort the codes they expect).
impl Ord for Code {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no code (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a zdd diagnostic code")]
pub struct UnknownCode(pub String);

impl FromStr for Code {
    type Err = UnknownCode;

    /// Reads `zdd::unknown-step` or `unknown-step`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.strip_prefix("zdd::").unwrap_or(text);
        Self::all().find(|c| c.name() == name).ok_or_else(|| UnknownCode(text.to_owned()))
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_from_its_text_with_or_without_the_prefix() {
        for code in Code::all() {
            assert_eq!(code.as_str().parse(), Ok(code));
            assert_eq!(code.name().parse(), Ok(code));
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{code}\""));
        }
        assert_eq!("zdd::no-such-code".parse::<Code>(), Err(UnknownCode("zdd::no-such-code".into())));
    }

    #[test]
    fn codes_are_distinct_plain_names() {
        let mut names: Vec<&str> = Code::all().map(Code::name).collect();
        assert!(names.iter().all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
