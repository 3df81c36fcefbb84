//! Rendering: the template context (built here, in Rust, so templates stay
//! plain), strict handlebars, YAML documents, and the typed check of each.

use std::collections::BTreeMap;
use std::sync::{LazyLock, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_pki::{BootstrapTokenSecret, PkiBundle, jws};
use handlebars::{
    Handlebars, RenderContext, Renderable, StringOutput, Template, handlebars_helper,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args;
use crate::check::check_object;
use crate::error::RenderError;
use crate::input::{BootstrapInput, RenderInput};
use gantry_api::labels::{MANAGED_BY, TENANT_LABEL};

/// Which cluster an object is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The service cluster, namespace `tcp-<name>`.
    Service,
    /// The tenant cluster, through its own apiserver.
    Tenant,
}

/// The one template that sees key material. It gets its own small context
/// (namespace, labels, Secret data); every other template gets the main
/// context, which holds no keys. Besides keeping keys out of 13 of 14
/// templates, this keeps the main context small: handlebars copies the whole
/// context for each partial called with parameters.
const SECRETS_TEMPLATE: &str = "service/02-secrets.json";

/// The templates, in apply order within each set. Each may hold several documents.
pub const TEMPLATES: &[(Target, &str, &str)] = &[
    (
        Target::Service,
        "service/00-namespace.yaml",
        include_str!("../templates/service/00-namespace.yaml"),
    ),
    (
        Target::Service,
        "service/01-kube-apiserver-service.yaml",
        include_str!("../templates/service/01-kube-apiserver-service.yaml"),
    ),
    (
        Target::Service,
        SECRETS_TEMPLATE,
        include_str!("../templates/service/02-secrets.json"),
    ),
    (
        Target::Service,
        "service/03-network-policies.yaml",
        include_str!("../templates/service/03-network-policies.yaml"),
    ),
    (
        Target::Service,
        "service/04-etcd.yaml",
        include_str!("../templates/service/04-etcd.yaml"),
    ),
    (
        Target::Service,
        "service/05-kube-apiserver.yaml",
        include_str!("../templates/service/05-kube-apiserver.yaml"),
    ),
    (
        Target::Service,
        "service/06-kube-controller-manager.yaml",
        include_str!("../templates/service/06-kube-controller-manager.yaml"),
    ),
    (
        Target::Service,
        "service/07-kube-scheduler.yaml",
        include_str!("../templates/service/07-kube-scheduler.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/00-cluster-info.yaml",
        include_str!("../templates/tenant/00-cluster-info.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/01-bootstrap-token.yaml",
        include_str!("../templates/tenant/01-bootstrap-token.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/02-bootstrap-rbac.yaml",
        include_str!("../templates/tenant/02-bootstrap-rbac.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/03-kubeadm-config.yaml",
        include_str!("../templates/tenant/03-kubeadm-config.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/04-kubelet-config.yaml",
        include_str!("../templates/tenant/04-kubelet-config.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/05-kube-proxy.yaml",
        include_str!("../templates/tenant/05-kube-proxy.yaml"),
    ),
    (
        Target::Tenant,
        "tenant/06-coredns.yaml",
        include_str!("../templates/tenant/06-coredns.yaml"),
    ),
];

/// The templates of the bootstrap objects (Namespace, kube-apiserver
/// Service): rendered from [`BootstrapInput`] alone, so the controller can
/// create them before it knows the endpoint or has a PKI.
const BOOTSTRAP_TEMPLATES: [&str; 2] = [
    "service/00-namespace.yaml",
    "service/01-kube-apiserver-service.yaml",
];

/// Partials shared by several templates.
const PARTIALS: &[(&str, &str)] = &[
    (
        "pod-common",
        include_str!("../templates/service/_pod-common.yaml"),
    ),
    (
        "container-security",
        include_str!("../templates/service/_container-security.yaml"),
    ),
];

handlebars_helper!(json_helper: |value: Json| serde_json::to_string(value).expect("JSON values serialise"));

/// The registry: strict mode (a missing value is an error), no HTML
/// escaping, one helper (`json`, quoting values as YAML-safe JSON) and the
/// partials. The templates themselves are compiled on first use
/// ([`compiled`]), by the render workers or by
/// [`compile_templates_in_background`], so a fresh process compiles them on
/// all cores.
static REGISTRY: LazyLock<Result<Handlebars<'static>, String>> = LazyLock::new(|| {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    registry.register_helper("json", Box::new(json_helper));
    for (name, text) in PARTIALS {
        registry
            .register_partial(name, *text)
            .map_err(|e| format!("partial {name}: {e}"))?;
    }
    Ok(registry)
});

/// Each template compiled once per process, by the first worker that renders it.
static COMPILED: LazyLock<Vec<OnceLock<Result<Template, String>>>> =
    LazyLock::new(|| TEMPLATES.iter().map(|_| OnceLock::new()).collect());

/// Template `index` of [`TEMPLATES`], compiled on first use. A thread that
/// asks while another compiles it waits for that compilation.
fn compiled(index: usize) -> &'static Result<Template, String> {
    COMPILED[index].get_or_init(|| Template::compile(TEMPLATES[index].2).map_err(|e| e.to_string()))
}

/// Starts compiling the partials and every template on a background thread
/// and returns at once. Compiling costs about 3 ms of CPU, more than the rest
/// of a render; a short-lived process (`gantry render`) calls this first, so
/// that compilation overlaps reading its input and issuing the PKI. Rendering
/// is correct with or without it: each template is compiled exactly once,
/// by whichever thread needs it first.
pub fn compile_templates_in_background() {
    std::thread::spawn(|| {
        let _ = REGISTRY.as_ref();
        // From the last template: the render workers start with the first.
        for index in (0..TEMPLATES.len()).rev() {
            let _ = compiled(index);
        }
    });
}

/// Renders template `index` of [`TEMPLATES`] with `data`.
fn render_template(
    registry: &Handlebars<'static>,
    index: usize,
    data: &handlebars::Context,
) -> Result<String, RenderError> {
    let name = TEMPLATES[index].1;
    let fail = |reason: String| RenderError::Template {
        template: name.to_string(),
        reason,
    };
    let template = compiled(index)
        .as_ref()
        .map_err(|reason| fail(reason.clone()))?;
    let mut output = StringOutput::new();
    template
        .render(registry, data, &mut RenderContext::new(None), &mut output)
        .map_err(|e| fail(e.to_string()))?;
    output.into_string().map_err(|e| fail(e.to_string()))
}

/// One rendered Kubernetes object.
#[derive(Debug, Clone)]
pub struct RenderedObject {
    pub template: &'static str,
    pub kind: String,
    pub name: String,
    /// The object, as checked against its k8s-openapi type.
    pub value: Value,
    /// `value` as YAML, made once: files and the chart archive share it.
    yaml: OnceLock<String>,
}

impl PartialEq for RenderedObject {
    fn eq(&self, other: &Self) -> bool {
        (self.template, &self.kind, &self.name, &self.value)
            == (other.template, &other.kind, &other.name, &other.value)
    }
}

impl RenderedObject {
    /// The object as a YAML document (keys sorted).
    pub fn to_yaml(&self) -> &str {
        self.yaml.get_or_init(|| {
            serde_yaml::to_string(&self.value).expect("JSON values serialise as YAML")
        })
    }

    /// Whether the object holds private keys or tokens.
    pub fn is_secret(&self) -> bool {
        self.kind == "Secret"
    }
}

/// The two ordered sets of a tenant.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub service: Vec<RenderedObject>,
    pub tenant: Vec<RenderedObject>,
}

impl Rendered {
    /// Makes every object's YAML ([`RenderedObject::to_yaml`]) now, on all
    /// cores, for callers that will write them all (`gantry render`).
    pub fn emit_yaml(&self) {
        let objects: Vec<&RenderedObject> = self.service.iter().chain(&self.tenant).collect();
        on_all_cores(objects.len(), |i| {
            objects[i].to_yaml();
        });
    }
}

/// What rendering one template gives: its set and its checked objects.
type TemplateResult = Result<(Target, Vec<RenderedObject>), RenderError>;

/// Renders both sets for `input` with the tenant's PKI. Templates are
/// independent, so they are rendered, parsed and checked on all cores.
pub fn render(input: &RenderInput, pki: &PkiBundle) -> Result<Rendered, RenderError> {
    let registry = REGISTRY.as_ref().map_err(|reason| RenderError::Template {
        template: "(registry)".into(),
        reason: reason.clone(),
    })?;
    // One handlebars Context for all templates: `render(name, &data)` would
    // copy the whole context (Secrets included) for every template.
    let secrets = secrets(pki);
    let wrap = |data: Value| {
        handlebars::Context::wraps(data).map_err(|e| RenderError::Template {
            template: "(context)".into(),
            reason: e.to_string(),
        })
    };
    let context = wrap(context(input, pki, &secrets)?)?;
    let bootstrap_context = wrap(bootstrap_context(&BootstrapInput::from(input)))?;
    let secrets_context = wrap(json!({
        "namespace": input.namespace,
        "common_labels": common_labels(input),
        "secrets": secrets.iter().map(|s| json!({"name": s.name, "data": s.data})).collect::<Vec<_>>(),
    }))?;
    let render_one = |index: usize| {
        let (target, name, _) = TEMPLATES[index];
        let data = if name == SECRETS_TEMPLATE {
            &secrets_context
        } else if BOOTSTRAP_TEMPLATES.contains(&name) {
            &bootstrap_context
        } else {
            &context
        };
        let text = render_template(registry, index, data)?;
        parse_documents(name, &text).map(|objects| (target, objects))
    };
    let results: Vec<TemplateResult> = on_all_cores(TEMPLATES.len(), render_one);
    let mut rendered = Rendered {
        service: Vec::new(),
        tenant: Vec::new(),
    };
    for result in results {
        let (target, objects) = result?;
        match target {
            Target::Service => rendered.service.extend(objects),
            Target::Tenant => rendered.tenant.extend(objects),
        }
    }
    Ok(rendered)
}

/// `(0..count).map(job)` on all cores, results in index order. Workers take
/// the next index from a shared counter (jobs differ a lot in size); the
/// calling thread is one of them.
fn on_all_cores<T: Send>(count: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count);
    if workers < 2 {
        return (0..count).map(job).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= count {
                break done;
            }
            done.push((i, job(i)));
        }
    };
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
        let mine = work();
        let theirs = helpers
            .into_iter()
            .flat_map(|h| h.join().expect("render worker panicked"));
        for (i, result) in mine.into_iter().chain(theirs) {
            slots[i] = Some(result);
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.expect("every job ran"))
        .collect()
}

/// Splits a template's output into documents: a stream of JSON values for
/// `.json` templates, YAML documents (`---`) otherwise. Each is checked.
fn parse_documents(template: &'static str, text: &str) -> Result<Vec<RenderedObject>, RenderError> {
    let documents: Vec<Result<Value, String>> = if template.ends_with(".json") {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .map(|doc| doc.map_err(|e| format!("not JSON: {e}")))
            .collect()
    } else {
        serde_yaml::Deserializer::from_str(text)
            .map(|doc| Value::deserialize(doc).map_err(|e| format!("not YAML: {e}")))
            .collect()
    };
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let fail = |reason: String| RenderError::Document {
            template: template.into(),
            document: index + 1,
            reason,
        };
        let value = document.map_err(fail)?;
        if value.is_null() {
            continue;
        }
        let field = |pointer: &str| {
            value
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(kind), Some(name)) = (field("/kind"), field("/metadata/name")) else {
            return Err(fail("missing kind or metadata.name".into()));
        };
        check_object(&value).map_err(|(path, reason)| RenderError::Schema {
            template: template.into(),
            kind: kind.clone(),
            name: name.clone(),
            path,
            reason,
        })?;
        objects.push(RenderedObject {
            template,
            kind,
            name,
            value,
            yaml: OnceLock::new(),
        });
    }
    Ok(objects)
}

/// Renders only the bootstrap objects (Namespace, kube-apiserver Service),
/// exactly as [`render`] renders them.
pub fn render_bootstrap(input: &BootstrapInput) -> Result<Vec<RenderedObject>, RenderError> {
    let registry = REGISTRY.as_ref().map_err(|reason| RenderError::Template {
        template: "(registry)".into(),
        reason: reason.clone(),
    })?;
    let context = handlebars::Context::wraps(bootstrap_context(input)).map_err(|e| {
        RenderError::Template {
            template: "(context)".into(),
            reason: e.to_string(),
        }
    })?;
    let mut objects = Vec::new();
    for (index, (_, name, _)) in TEMPLATES.iter().enumerate() {
        if BOOTSTRAP_TEMPLATES.contains(name) {
            let text = render_template(registry, index, &context)?;
            objects.extend(parse_documents(name, &text)?);
        }
    }
    Ok(objects)
}

fn component_labels(tenant: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": tenant,
        (MANAGED_BY.0): MANAGED_BY.1,
        TENANT_LABEL: tenant,
    })
}

fn component_selector(tenant: &str, component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, TENANT_LABEL: tenant})
}

fn bootstrap_context(input: &BootstrapInput) -> Value {
    json!({
        "name": input.name,
        "namespace": input.namespace,
        "labels": component_labels(&input.name, "kube-apiserver"),
        "selector": component_selector(&input.name, "kube-apiserver"),
        "service_type": input.service_type,
        "service_annotations": input.service_annotations,
        "load_balancer_ip": input.load_balancer_ip.map(|ip| ip.to_string()),
        "node_port": input.node_port,
    })
}

/// A Secret of the tenant namespace: its name and `data` (base64 values).
struct SecretData {
    name: &'static str,
    data: BTreeMap<String, String>,
}

/// One Secret of the service set and the PKI files it holds.
pub struct SecretFiles {
    pub name: &'static str,
    /// (key in the Secret, path in the bundle).
    pub files: &'static [(&'static str, &'static str)],
    /// Holds a CA or the service-account signing key: created once and never
    /// overwritten, since replacing one would invalidate everything it signed.
    pub signing_key: bool,
}

impl SecretFiles {
    /// The bundle path of its private key (`*.key`), if it holds one.
    pub fn key_path(&self) -> Option<&'static str> {
        self.files
            .iter()
            .map(|(_, path)| *path)
            .find(|path| path.ends_with(".key"))
    }
}

/// How the PKI is stored in the service cluster: each Secret of the service
/// set and its files (architecture.md's list).
pub const SECRET_FILES: &[SecretFiles] = &[
    SecretFiles {
        name: "ca",
        files: &[("ca.crt", "pki/ca.crt"), ("ca.key", "pki/ca.key")],
        signing_key: true,
    },
    SecretFiles {
        name: "front-proxy-ca",
        files: &[
            ("front-proxy-ca.crt", "pki/front-proxy-ca.crt"),
            ("front-proxy-ca.key", "pki/front-proxy-ca.key"),
        ],
        signing_key: true,
    },
    SecretFiles {
        name: "etcd-ca",
        files: &[("ca.crt", "pki/etcd/ca.crt"), ("ca.key", "pki/etcd/ca.key")],
        signing_key: true,
    },
    SecretFiles {
        name: "sa",
        files: &[("sa.key", "pki/sa.key"), ("sa.pub", "pki/sa.pub")],
        signing_key: true,
    },
    SecretFiles {
        name: "apiserver-certs",
        files: &[
            ("apiserver.crt", "pki/apiserver.crt"),
            ("apiserver.key", "pki/apiserver.key"),
            (
                "apiserver-kubelet-client.crt",
                "pki/apiserver-kubelet-client.crt",
            ),
            (
                "apiserver-kubelet-client.key",
                "pki/apiserver-kubelet-client.key",
            ),
            ("front-proxy-client.crt", "pki/front-proxy-client.crt"),
            ("front-proxy-client.key", "pki/front-proxy-client.key"),
            ("apiserver-etcd-client.crt", "pki/apiserver-etcd-client.crt"),
            ("apiserver-etcd-client.key", "pki/apiserver-etcd-client.key"),
        ],
        signing_key: false,
    },
    SecretFiles {
        name: "etcd-certs",
        files: &[
            ("ca.crt", "pki/etcd/ca.crt"),
            ("server.crt", "pki/etcd/server.crt"),
            ("server.key", "pki/etcd/server.key"),
            ("peer.crt", "pki/etcd/peer.crt"),
            ("peer.key", "pki/etcd/peer.key"),
            ("healthcheck-client.crt", "pki/etcd/healthcheck-client.crt"),
            ("healthcheck-client.key", "pki/etcd/healthcheck-client.key"),
        ],
        signing_key: false,
    },
    SecretFiles {
        name: "admin-kubeconfig",
        files: &[
            ("admin.conf", "admin.conf"),
            ("super-admin.conf", "super-admin.conf"),
        ],
        signing_key: false,
    },
    SecretFiles {
        name: "controller-manager-kubeconfig",
        files: &[("controller-manager.conf", "controller-manager.conf")],
        signing_key: false,
    },
    SecretFiles {
        name: "scheduler-kubeconfig",
        files: &[("scheduler.conf", "scheduler.conf")],
        signing_key: false,
    },
];

/// The Secrets that hold a CA or the service-account signing key.
pub fn signing_key_secrets() -> impl Iterator<Item = &'static SecretFiles> {
    SECRET_FILES.iter().filter(|secret| secret.signing_key)
}

/// The Secrets of the service set, from the PKI files.
fn secrets(pki: &PkiBundle) -> Vec<SecretData> {
    SECRET_FILES
        .iter()
        .map(|secret| SecretData {
            name: secret.name,
            data: secret
                .files
                .iter()
                .map(|(key, path)| {
                    let contents = pki.get(path).expect("an issued bundle holds every file");
                    (key.to_string(), STANDARD.encode(contents))
                })
                .collect(),
        })
        .collect()
}

/// SHA-256 over the named Secrets' contents: a pod template annotation that
/// changes, and so rolls the pods, whenever a mounted certificate changes.
fn checksum(secrets: &[SecretData], names: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for secret in secrets.iter().filter(|s| names.contains(&s.name)) {
        for (key, value) in &secret.data {
            hasher.update(format!("{}/{key}={value}\n", secret.name));
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn common_labels(input: &RenderInput) -> Value {
    json!({
        (MANAGED_BY.0): MANAGED_BY.1,
        TENANT_LABEL: input.name,
    })
}

fn context(
    input: &RenderInput,
    pki: &PkiBundle,
    secrets: &[SecretData],
) -> Result<Value, RenderError> {
    let labels = |component: &str| component_labels(&input.name, component);
    let selector = |component: &str| component_selector(&input.name, component);
    let component = |name: &str,
                     replicas: u32,
                     resources: &crate::input::Resources,
                     args: Vec<String>,
                     mounts: &[&str]| {
        json!({
            "labels": labels(name),
            "selector": selector(name),
            "replicas": replicas,
            "resources": resources,
            "args": args,
            "checksum": checksum(secrets, mounts),
        })
    };
    let cluster_info = pki.cluster_info_kubeconfig();
    let token_secret = BootstrapTokenSecret::new(
        &input.token,
        input.token_expiration,
        "gantry: the initial join token of this tenant",
    );
    let dns_ip =
        gantry_pki::nth_address(&input.networking.service_cidr, 10).expect("validated CIDR");
    Ok(json!({
        "name": input.name,
        "namespace": input.namespace,
        "version": input.version.to_string(),
        "image_repository": input.image_repository,
        "images": input.images,
        "endpoint": {
            "url": input.endpoint.url(),
            "host_port": input.endpoint.to_string(),
            "port": input.endpoint.port,
        },
        "common_labels": common_labels(input),
        "etcd": {
            "component": component("etcd", input.etcd.replicas, &input.etcd.resources, args::etcd(input), &["etcd-certs"]),
            "storage_size": input.etcd.storage_size,
            "storage_class_name": input.etcd.storage_class_name,
            "max_unavailable": (input.etcd.replicas - 1) / 2,
            "client_port": args::ETCD_CLIENT_PORT,
            "peer_port": args::ETCD_PEER_PORT,
            "metrics_port": args::ETCD_METRICS_PORT,
        },
        "apiserver": {
            "component": component(
                "kube-apiserver",
                input.api_server.replicas,
                &input.api_server.resources,
                args::api_server(input)?,
                &["ca", "front-proxy-ca", "etcd-ca", "sa", "apiserver-certs"],
            ),
        },
        "controller_manager": component(
            "kube-controller-manager",
            input.controller_manager.replicas,
            &input.controller_manager.resources,
            args::controller_manager(input)?,
            &["ca", "front-proxy-ca", "sa", "controller-manager-kubeconfig"],
        ),
        "scheduler": component(
            "kube-scheduler",
            input.scheduler.replicas,
            &input.scheduler.resources,
            args::scheduler(input)?,
            &["scheduler-kubeconfig"],
        ),
        "placement": {
            "node_selector": input.placement.node_selector,
            "tolerations": input.placement.tolerations,
            "priority_class_name": input.placement.priority_class_name,
        },
        "networking": {
            "service_cidr": input.networking.service_cidr.to_string(),
            "pod_cidr": input.networking.pod_cidr.to_string(),
            "dns_domain": input.networking.dns_domain,
            "dns_service_ip": dns_ip.to_string(),
        },
        "cluster_info": {
            "kubeconfig": String::from_utf8_lossy(cluster_info),
            "signature_key": jws::cluster_info_signature_key(&input.token),
            "signature": jws::sign_cluster_info(cluster_info, &input.token),
        },
        "kubeadm": {
            "kubernetes_version": format!("v{}", input.version),
        },
        "bootstrap_token": {
            "name": token_secret.metadata.name,
            "string_data": token_secret.string_data,
        },
    }))
}
