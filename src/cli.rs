//! Command line: every flag has an environment variable, doc comments are
//! the help text.

use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeSet;
use std::str::FromStr;

/// Bridges OpenShift namespaces, ImageStreams and Builds to Red Hat Quay.
#[derive(Debug, Parser)]
#[command(name = "quay-bridge-operator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Threads running the async work (default: 2, or 1 on a single CPU).
    /// The operator waits on the network: more threads cost memory (each
    /// has its own stack and allocator arena) and do not add speed. Without
    /// this cap, a pod without a CPU limit would start one per node CPU.
    #[arg(long, env = "WORKER_THREADS", global = true, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: Option<u16>,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The worker thread count: the flag, else 2 capped by the CPUs available.
pub fn worker_threads(flag: Option<u16>) -> usize {
    match flag {
        Some(n) => usize::from(n.max(1)),
        None => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: controllers, the Build webhook and the admin server.
    Run(RunArgs),
    /// Run the whole product on loopback, until Ctrl-C or SIGTERM: an
    /// embedded Kubernetes API server playing OpenShift's builds and image
    /// imports, an embedded Quay, and the operator with its webhook and
    /// admin server. `--demo` tells the `oc new-app` story on it once.
    Sandbox(SandboxArgs),
    /// Remove the operator's finalizers from every namespace and
    /// QuayIntegration (Quay organizations are kept), so nothing is
    /// stranded when the operator is removed. Stop the operator first.
    Uninstall(UninstallArgs),
    /// Print the QuayIntegration CustomResourceDefinitions (both API groups)
    /// as YAML, as committed in `crds/`.
    Crd,
}

/// Where the webhook's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookCerts {
    /// `tls.crt`/`tls.key` or OLM's `apiserver.crt`/`apiserver.key` in
    /// `--webhook-cert-dir`, reloaded when they change.
    Files,
    /// Made, kept in a Secret, injected into the webhook configuration and
    /// rotated by the operator.
    SelfManaged,
    /// No webhook (Builds are not rewritten).
    Disabled,
}

/// `run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig to use (default: in-cluster configuration or $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Namespaces reconciled at once (at least 1).
    #[arg(long, env = "CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Seconds between resyncs of a converged namespace against Quay.
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Address of the admin server (/healthz, /readyz, /metrics; plain HTTP).
    #[arg(long, env = "ADMIN_LISTEN", default_value = "0.0.0.0:8081")]
    pub admin_listen: String,
    /// Address of the webhook (HTTPS).
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub webhook_listen: String,
    /// Where the webhook's serving certificate comes from.
    #[arg(long, env = "WEBHOOK_CERTS", value_enum, default_value_t = WebhookCerts::Files)]
    pub webhook_certs: WebhookCerts,
    /// Directory of the serving certificate (files mode).
    #[arg(
        long,
        env = "WEBHOOK_CERT_DIR",
        default_value = "/apiserver.local.config/certificates"
    )]
    pub webhook_cert_dir: std::path::PathBuf,
    /// The operator's namespace (self-managed certificate Secret).
    #[arg(long, env = "POD_NAMESPACE", default_value = "openshift-operators")]
    pub operator_namespace: String,
    /// The webhook Service name.
    #[arg(long, env = "WEBHOOK_SERVICE", default_value = "quay-bridge-operator")]
    pub webhook_service: String,
    /// The MutatingWebhookConfiguration name.
    #[arg(
        long,
        env = "WEBHOOK_CONFIGURATION",
        default_value = "quay-bridge-operator"
    )]
    pub webhook_configuration: String,
    /// This replica's name, for Events and the leader Lease. Without it,
    /// the host name with a random suffix: two replicas never share one.
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Elect a leader among replicas on a Lease in the operator's namespace
    /// (every replica serves the webhook; only the leader reconciles).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Seconds a Lease is valid without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds the leader keeps trying to renew before stepping down.
    #[arg(long, env = "RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub renew_deadline_seconds: u64,
    /// Seconds between election attempts.
    #[arg(long, env = "RETRY_PERIOD_SECONDS", default_value_t = 2)]
    pub retry_period_seconds: u64,
}

/// `uninstall` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    /// Kubeconfig to use (default: in-cluster configuration or $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// `sandbox` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Components to run, comma separated: kube, quay, operator.
    #[arg(long, env = "SANDBOX_COMPONENTS", default_value = "kube,quay,operator")]
    pub components: Components,

    /// Address of the embedded Quay (REST API and registry).
    #[arg(long, env = "SANDBOX_LISTEN_QUAY", default_value = "127.0.0.1:8080")]
    pub listen_quay: String,

    /// The embedded Quay's admin OAuth token (all scopes); random and
    /// printed when not given.
    #[arg(long, env = "SANDBOX_QUAY_TOKEN", hide_env_values = true)]
    pub quay_token: Option<String>,

    /// Use this external Quay (URL with scheme) instead of the embedded
    /// one; `--quay-token` must then be a token of it with the scopes the
    /// operator needs.
    #[arg(long, env = "SANDBOX_QUAY_URL", requires = "quay_token")]
    pub quay_url: Option<String>,

    /// Address of the embedded Kubernetes API server (HTTPS).
    #[arg(long, env = "SANDBOX_LISTEN_KUBE", default_value = "127.0.0.1:6443")]
    pub listen_kube: String,

    /// Address of the operator's admin server (/healthz, /readyz, /metrics;
    /// plain HTTP), as `run` serves it.
    #[arg(long, env = "SANDBOX_LISTEN_ADMIN", default_value = "127.0.0.1:8081")]
    pub listen_admin: String,

    /// Namespaces the operator reconciles at once (at least 1).
    #[arg(long, env = "CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Seconds between resyncs of a converged namespace against Quay (set
    /// it low to watch one).
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,

    /// Tell the whole `oc new-app` story once on a sandbox of its own (free
    /// ports), in 10 steps: [1] start an embedded Quay, an OpenShift-like
    /// cluster and the operator, the credentials Secret holding only a Quay
    /// user's username and password; [2] token bootstrap: the operator signs
    /// in and mints its own token; [3] `oc new-project`: the namespace gets
    /// a Quay organization, robots and pull/push Secrets; [4] `oc new-app`:
    /// an ImageStream (with its Quay repository) and a BuildConfig; [5] `oc
    /// start-build`: the webhook rewrites the Build to push to Quay; [6] the
    /// build pushes with the builder robot; [7] the operator imports the tag
    /// into the ImageStream; [8] a deployment pulls the image with the
    /// default robot's Secret; [9] team sync: a user bound `edit` joins the
    /// organization's team and pulls with their own password; [10]
    /// robot-token rotation while a deployment keeps pulling. The story
    /// goes to stdout; logs to a file that is removed when every step
    /// succeeded (kept, and named, otherwise or with --keep), or to stderr
    /// when RUST_LOG is set. Exits 0 only if every step succeeded.
    #[arg(long, env = "SANDBOX_DEMO")]
    pub demo: bool,

    /// With --demo: keep everything running after the story, to explore it
    /// with kubectl and curl.
    #[arg(long, env = "SANDBOX_KEEP", requires = "demo")]
    pub keep: bool,

    /// Where to write a kubeconfig for the embedded API server.
    #[arg(
        long,
        env = "SANDBOX_KUBECONFIG_OUT",
        default_value = "sandbox.kubeconfig"
    )]
    pub kubeconfig_out: std::path::PathBuf,
}

/// A sandbox component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// The embedded Kubernetes API server.
    Kube,
    /// The embedded Quay.
    Quay,
    /// The operator itself.
    Operator,
}

/// A set of components, parsed from a comma list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components(pub BTreeSet<Component>);

impl FromStr for Components {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(match part {
                "kube" => Component::Kube,
                "quay" => Component::Quay,
                "operator" => Component::Operator,
                other => {
                    return Err(format!(
                        "unknown component {other:?} (expected kube, quay or operator)"
                    ));
                }
            });
        }
        if set.is_empty() {
            return Err("name at least one component".into());
        }
        Ok(Components(set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn worker_threads_default_to_two_at_most() {
        assert_eq!(worker_threads(Some(4)), 4);
        assert!((1..=2).contains(&worker_threads(None)));
        let cli =
            Cli::try_parse_from(["quay-bridge-operator", "run", "--worker-threads", "1"]).unwrap();
        assert_eq!(cli.worker_threads, Some(1));
        assert!(
            Cli::try_parse_from(["quay-bridge-operator", "--worker-threads", "0", "run"]).is_err()
        );
    }

    #[test]
    fn concurrency_is_at_least_one() {
        for command in ["run", "sandbox"] {
            assert!(
                Cli::try_parse_from(["quay-bridge-operator", command, "--concurrency", "0"])
                    .is_err(),
                "{command}"
            );
            assert!(
                Cli::try_parse_from(["quay-bridge-operator", command, "--concurrency", "1"])
                    .is_ok(),
                "{command}"
            );
        }
    }

    #[test]
    fn components_parse() {
        let c: Components = "quay, kube".parse().unwrap();
        assert_eq!(c.0, [Component::Kube, Component::Quay].into());
        assert!("quay,etcd".parse::<Components>().is_err());
        assert!(",".parse::<Components>().is_err());
    }

    #[test]
    fn sandbox_defaults() {
        let cli = Cli::try_parse_from(["quay-bridge-operator", "sandbox"]).unwrap();
        let Command::Sandbox(args) = cli.command else {
            panic!("expected sandbox")
        };
        assert_eq!(args.listen_quay, "127.0.0.1:8080");
        assert_eq!(args.listen_kube, "127.0.0.1:6443");
        assert_eq!(
            args.components.0,
            [Component::Kube, Component::Quay, Component::Operator].into()
        );
        assert!(args.quay_token.is_none());
    }
}
