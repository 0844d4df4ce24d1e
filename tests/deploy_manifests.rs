//! The deployment files under `deploy/` and the `Dockerfile`, checked
//! offline: no Docker engine or Kubernetes cluster is used (there is none on
//! the machines that run these tests). Every YAML file parses; the probewatch
//! configs they carry pass `daemon::config::parse`; and the essentials
//! agree across files: images, read-only run-folder mounts, the port of the
//! config's `listen` everywhere a port is named, non-root users, probes and
//! health checks on `/healthz` and `/readyz`, the sharded StatefulSet's
//! `--shard-count` against its replicas, and the PrometheusRule's groups
//! against `deploy/prometheus/rules/probewatch.rules.yml`. The systemd unit
//! goes through `systemd-analyze verify`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Every document of a YAML file.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(&root().join(rel));
    assert_eq!(docs.len(), 1, "{rel}: one document expected");
    docs.remove(0)
}

/// `v[a][b]…`, panicking with the path when a key is missing.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        cur = match k.parse::<usize>() {
            Ok(n) if cur.is_sequence() => cur.get(n),
            _ => cur.get(*k),
        }
        .unwrap_or_else(|| panic!("missing {} in {v:?}", path[..=i].join(".")));
    }
    cur
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> &'a Vec<Value> {
    at(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{} is not a list", path.join(".")))
}

/// A probewatch config text, checked by the real parser.
fn config(text: &str, name: &str) -> daemon::config::Config {
    daemon::config::parse(text, Path::new(name))
        .unwrap_or_else(|e| panic!("{name} is not a valid probewatch config: {e}"))
}

/// Every YAML file under deploy/.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("deploy/ is readable") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    assert!(files.len() >= 9, "{files:?}");
    for f in &files {
        assert!(!yaml_docs(f).is_empty(), "{}: empty", f.display());
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let from = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(from >= 2, "multi-stage: {from} FROM lines");
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "USER {user}"
    );
    let cfg = config(&read("deploy/compose/probewatch.toml"), "probewatch.toml");
    let port = cfg.listen.port().to_string();
    assert!(
        lines.contains(&format!("EXPOSE {port}").as_str()),
        "EXPOSE {port}"
    );
    let health = text
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK")
        .split("\nENTRYPOINT")
        .next()
        .unwrap_or_default();
    assert!(
        health.contains(&format!("127.0.0.1:{port}/healthz")),
        "HEALTHCHECK does not GET /healthz on {port}: {health}"
    );
    // The image's default config is the compose config, where CMD reads it.
    assert!(text.contains("COPY deploy/compose/probewatch.toml /etc/probewatch/probewatch.toml"));
    assert!(text.contains("\"--config\", \"/etc/probewatch/probewatch.toml\""));
    assert!(
        text.contains("--locked"),
        "the image builds with Cargo.lock"
    );
    // What the build stage copies exists.
    for p in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "crates",
        "xtask",
        "config",
        "README.md",
    ] {
        assert!(root().join(p).exists(), "{p}");
    }
}

#[test]
fn compose_stack_is_consistent() {
    let dir = root().join("deploy/compose");
    let compose = yaml("deploy/compose/docker-compose.yml");
    let services = at(&compose, &["services"]);
    for name in ["probewatch", "prometheus", "alertmanager", "grafana"] {
        assert!(services.get(name).is_some(), "service {name}");
    }
    let pw = at(services, &["probewatch"]);
    let cfg = config(&read("deploy/compose/probewatch.toml"), "probewatch.toml");
    let port = cfg.listen.port();
    assert!(
        !cfg.listen.ip().is_loopback(),
        "inside a container listen beyond loopback"
    );
    assert_eq!(cfg.runs.len(), 1);
    let run_folder = cfg.runs[0].folder.display().to_string();

    // Build context and Dockerfile.
    let context = dir.join(s(pw, &["build", "context"]));
    assert!(context.join(s(pw, &["build", "dockerfile"])).is_file());
    // Non-root, read-only root file system, no privileges.
    let user = s(pw, &["user"]);
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "user {user}"
    );
    assert_eq!(at(pw, &["read_only"]).as_bool(), Some(true));
    // Published on the host's loopback, container side = listen port.
    let ports: Vec<&str> = seq(pw, &["ports"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ports, [format!("127.0.0.1:{port}:{port}")]);
    // Mounts: the run folder and the config read-only, the store writable.
    let volumes: Vec<&str> = seq(pw, &["volumes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mount = |target: &str| {
        volumes
            .iter()
            .map(|v| split_volume(v))
            .find(|(_, t, _)| *t == target)
            .unwrap_or_else(|| panic!("no mount at {target}: {volumes:?}"))
    };
    assert_eq!(mount(&run_folder).2, "ro", "run folder not read-only");
    assert_eq!(mount("/etc/probewatch/probewatch.toml").2, "ro");
    let store_dir = cfg
        .store
        .parent()
        .expect("store folder")
        .display()
        .to_string();
    assert_eq!(mount(&store_dir).2, "", "the store must be writable");
    // Health check on /healthz at the listen port.
    let test: Vec<&str> = seq(pw, &["healthcheck", "test"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        test.iter()
            .any(|a| *a == format!("http://127.0.0.1:{port}/healthz")),
        "{test:?}"
    );

    // Prometheus scrapes the probewatch service at that port and loads the
    // rules file mounted from deploy/prometheus/rules.
    let prom = yaml("deploy/compose/prometheus.yml");
    let targets: Vec<&str> = seq(
        &prom,
        &["scrape_configs", "0", "static_configs", "0", "targets"],
    )
    .iter()
    .filter_map(Value::as_str)
    .collect();
    assert_eq!(targets, [format!("probewatch:{port}")]);
    assert_eq!(
        s(&prom, &["rule_files", "0"]),
        "/etc/prometheus/rules/probewatch.rules.yml"
    );

    // Every relative host path mounted exists; the Prometheus, Alertmanager
    // and Grafana files come with the alerting work (deploy/prometheus,
    // deploy/alertmanager, deploy/grafana).
    let mut missing = Vec::new();
    for (name, svc) in services.as_mapping().expect("services map") {
        for v in svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let (host, _, _) = split_volume(v.as_str().expect("short volume syntax"));
            let host = host
                .strip_prefix("${RUN_DIR:-")
                .and_then(|h| h.strip_suffix('}'))
                .unwrap_or(host);
            if host.starts_with('.') && !dir.join(host).exists() {
                missing.push(format!("{}: {host}", name.as_str().unwrap_or("?")));
            }
        }
    }
    assert!(missing.is_empty(), "mounted paths missing: {missing:?}");
}

/// A compose short-syntax volume `HOST:TARGET[:MODE]` as (host, target,
/// mode); HOST may be a `${VAR:-default}` with a colon inside.
fn split_volume(v: &str) -> (&str, &str, &str) {
    let host_end = if v.starts_with("${") {
        v.find('}').expect("closing brace") + 1
    } else {
        v.find(':').expect("HOST:TARGET")
    };
    let (host, rest) = (&v[..host_end], &v[host_end + 1..]);
    let (target, mode) = rest.split_once(':').unwrap_or((rest, ""));
    (host, target, mode)
}

/// `key=value` lines of the unit's sections.
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let text = read("deploy/systemd/probewatch.service");
    let entries = unit_entries(&text);
    let get = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "probewatch"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(get(key), [value], "{key}");
    }
    let cfg = config(&read("deploy/systemd/probewatch.toml"), "probewatch.toml");
    assert!(
        cfg.listen.ip().is_loopback(),
        "the systemd example stays on loopback"
    );
    assert!(
        cfg.store.starts_with("/var/lib/probewatch"),
        "the store must be in the StateDirectory: {}",
        cfg.store.display()
    );
    let read_only: Vec<&str> = get("ReadOnlyPaths")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    for run in &cfg.runs {
        assert!(
            read_only.iter().any(|p| run.folder.starts_with(p)),
            "run folder {} is not under ReadOnlyPaths {read_only:?}",
            run.folder.display()
        );
    }
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(exec[0].contains("--config /etc/probewatch/probewatch.toml"));
    // The daemon may take 30 s to finish an analysis on SIGTERM.
    let stop = get("TimeoutStopSec")[0].trim_end_matches('s');
    assert!(
        stop.parse::<u64>().expect("seconds") > 30,
        "TimeoutStopSec {stop}"
    );

    // systemd-analyze verify, with ExecStart pointing at the binary built
    // for these tests (verify checks that it exists). Unknown keys are only
    // warnings to it, so any output about the unit fails the test.
    let analyze = which("systemd-analyze").expect(
        "systemd-analyze is needed for this test: apt-get install -y systemd (.ci/run does)",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = dir.path().join("probewatch.service");
    std::fs::write(
        &unit,
        text.replace(
            "/usr/local/bin/probewatch",
            env!("CARGO_BIN_EXE_probewatch"),
        ),
    )
    .expect("writing the unit copy");
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("probewatch"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The pod template's probewatch container of a workload.
fn probewatch_container<'a>(pod: &'a Value, list: &str) -> &'a Value {
    seq(pod, &[list])
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some("probewatch"))
        .unwrap_or_else(|| panic!("no probewatch container in {list}"))
}

/// Checks a probewatch container against the ConfigMap's config; returns
/// its image.
fn check_container(pod: &Value, c: &Value, cfg: &daemon::config::Config) -> String {
    let port = cfg.listen.port();
    let ports = seq(c, &["ports"]);
    assert_eq!(ports.len(), 1);
    assert_eq!(s(&ports[0], &["name"]), "metrics");
    assert_eq!(
        at(&ports[0], &["containerPort"]).as_u64(),
        Some(u64::from(port))
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(s(c, &[probe, "httpGet", "path"]), path, "{probe}");
        assert_eq!(s(c, &[probe, "httpGet", "port"]), "metrics", "{probe}");
    }
    let sc = at(c, &["securityContext"]);
    assert_eq!(at(sc, &["runAsNonRoot"]).as_bool(), Some(true));
    assert!(at(sc, &["runAsUser"]).as_u64().is_some_and(|u| u > 0));
    assert_eq!(at(sc, &["allowPrivilegeEscalation"]).as_bool(), Some(false));
    assert_eq!(at(sc, &["readOnlyRootFilesystem"]).as_bool(), Some(true));
    assert_eq!(
        at(pod, &["securityContext", "runAsNonRoot"]).as_bool(),
        Some(true)
    );
    // The run folder is mounted read-only; the store is writable.
    let mounts = seq(c, &["volumeMounts"]);
    let mount = |path: &Path| {
        mounts
            .iter()
            .find(|m| path.starts_with(s(m, &["mountPath"])))
            .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()))
    };
    for run in &cfg.runs {
        let m = mount(&run.folder);
        assert_eq!(m.get("readOnly").and_then(Value::as_bool), Some(true));
        let volume = seq(pod, &["volumes"])
            .iter()
            .find(|v| v.get("name") == m.get("name"))
            .expect("the mounted volume");
        assert!(volume.get("persistentVolumeClaim").is_some());
    }
    let store = mount(&cfg.store);
    assert_ne!(store.get("readOnly").and_then(Value::as_bool), Some(true));
    assert!(
        mount(Path::new("/etc/probewatch/probewatch.toml"))
            .get("readOnly")
            .is_some()
    );
    let args: Vec<&str> = seq(c, &["args"]).iter().filter_map(Value::as_str).collect();
    assert_eq!(
        &args[..3],
        ["watch", "--config", "/etc/probewatch/probewatch.toml"]
    );
    s(c, &["image"]).to_owned()
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(s(&cm, &["kind"]), "ConfigMap");
    let cfg = config(
        s(&cm, &["data", "probewatch.toml"]),
        "configmap probewatch.toml",
    );
    assert!(!cfg.listen.ip().is_loopback());

    // The training Job with probewatch as a native sidecar.
    let job = yaml("deploy/kubernetes/training-job.yaml");
    assert_eq!(s(&job, &["kind"]), "Job");
    let pod = at(&job, &["spec", "template", "spec"]);
    let sidecar = probewatch_container(pod, "initContainers");
    assert_eq!(s(sidecar, &["restartPolicy"]), "Always", "a native sidecar");
    let image = check_container(pod, sidecar, &cfg);
    let volume = |name: &str| {
        seq(pod, &["volumes"])
            .iter()
            .find(|v| s(v, &["name"]) == name)
            .unwrap_or_else(|| panic!("volume {name}"))
            .clone()
    };
    assert_eq!(
        s(&volume("probewatch-config"), &["configMap", "name"]),
        s(&cm, &["metadata", "name"])
    );
    // The trainer shares the checkpoint volume (and may write it).
    let trainer = &seq(pod, &["containers"])[0];
    assert!(
        seq(trainer, &["volumeMounts"])
            .iter()
            .any(|m| s(m, &["name"]) == "checkpoints")
    );
    let pod_labels = at(&job, &["spec", "template", "metadata", "labels"]);

    // Service → pod, ServiceMonitor → Service.
    let svc = yaml("deploy/kubernetes/service.yaml");
    for (k, v) in at(&svc, &["spec", "selector"])
        .as_mapping()
        .expect("selector")
    {
        assert_eq!(
            pod_labels.get(k.as_str().expect("key")),
            Some(v),
            "selector {k:?}"
        );
    }
    let svc_port = &seq(&svc, &["spec", "ports"])[0];
    assert_eq!(
        at(svc_port, &["port"]).as_u64(),
        Some(u64::from(cfg.listen.port()))
    );
    assert_eq!(s(svc_port, &["targetPort"]), "metrics");
    let sm = yaml("deploy/kubernetes/servicemonitor.yaml");
    assert_eq!(s(&sm, &["kind"]), "ServiceMonitor");
    for (k, v) in at(&sm, &["spec", "selector", "matchLabels"])
        .as_mapping()
        .expect("matchLabels")
    {
        let labels = at(&svc, &["metadata", "labels"]);
        assert_eq!(
            labels.get(k.as_str().expect("key")),
            Some(v),
            "matchLabels {k:?}"
        );
    }
    let endpoint = &seq(&sm, &["spec", "endpoints"])[0];
    assert_eq!(s(endpoint, &["port"]), s(svc_port, &["name"]));
    assert_eq!(s(endpoint, &["path"]), "/metrics");

    // The sharded StatefulSet: same image, --shard-count = replicas, its
    // headless Service selects its pods and is found by the ServiceMonitor.
    let docs = yaml_docs(&root().join("deploy/kubernetes/statefulset-sharded.yaml"));
    let sts = docs
        .iter()
        .find(|d| s(d, &["kind"]) == "StatefulSet")
        .expect("a StatefulSet");
    let headless = docs
        .iter()
        .find(|d| s(d, &["kind"]) == "Service")
        .expect("a Service");
    assert_eq!(s(headless, &["spec", "clusterIP"]), "None");
    assert_eq!(
        s(sts, &["spec", "serviceName"]),
        s(headless, &["metadata", "name"])
    );
    let sts_pod = at(sts, &["spec", "template", "spec"]);
    let c = probewatch_container(sts_pod, "containers");
    assert_eq!(check_container(sts_pod, c, &cfg), image);
    let args: Vec<&str> = seq(c, &["args"]).iter().filter_map(Value::as_str).collect();
    let count = args
        .iter()
        .position(|a| *a == "--shard-count")
        .map(|i| args[i + 1])
        .expect("--shard-count");
    assert_eq!(
        count.parse::<u64>().ok(),
        at(sts, &["spec", "replicas"]).as_u64(),
        "--shard-count must equal replicas"
    );
    let sts_labels = at(sts, &["spec", "template", "metadata", "labels"]);
    for (k, v) in at(headless, &["spec", "selector"])
        .as_mapping()
        .expect("selector")
    {
        assert_eq!(sts_labels.get(k.as_str().expect("key")), Some(v));
    }
    assert_eq!(
        at(headless, &["metadata", "labels", "app.kubernetes.io/name"]),
        at(
            &sm,
            &["spec", "selector", "matchLabels", "app.kubernetes.io/name"]
        )
    );

    // kustomization lists existing files.
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    for r in seq(&k, &["resources"]) {
        let r = r.as_str().expect("resource path");
        assert!(root().join("deploy/kubernetes").join(r).is_file(), "{r}");
    }
}

#[test]
fn prometheus_rule_carries_the_alerting_rules() {
    let rule = yaml("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(s(&rule, &["apiVersion"]), "monitoring.coreos.com/v1");
    assert_eq!(s(&rule, &["kind"]), "PrometheusRule");
    let groups = seq(&rule, &["spec", "groups"]);
    let alerts = groups
        .iter()
        .flat_map(|g| seq(g, &["rules"]).iter())
        .filter(|r| r.get("alert").is_some())
        .count();
    assert!(alerts > 0, "no alerting rule in the PrometheusRule");
    let rules = yaml("deploy/prometheus/rules/probewatch.rules.yml");
    assert!(
        at(&rules, &["groups"]) == at(&rule, &["spec", "groups"]),
        "deploy/kubernetes/prometheusrule.yaml differs from \
         deploy/prometheus/rules/probewatch.rules.yml: run scripts/sync-prometheusrule.sh"
    );
}
