//! Rendering: the template context (built here, in Rust, so templates stay
//! plain), strict handlebars, YAML documents, and the typed check of each.

use std::sync::{LazyLock, OnceLock};

use gantry_pki::PkiBundle;
use handlebars::{Handlebars, RenderContext, Renderable, StringOutput, Template};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::{bootstrap_context, common_labels, context};
use crate::error::RenderError;
use crate::input::{BootstrapInput, RenderInput};
use crate::kinds::check_object;
use crate::secrets::secrets;

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
/// The tenant set's one template with key material: the konnectivity
/// agent's credential. It gets the same small context.
const AGENT_SECRET_TEMPLATE: &str = "tenant/08-konnectivity-agent-secret.json";

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
        Target::Service,
        "service/08-etcd-backup.yaml",
        include_str!("../templates/service/08-etcd-backup.yaml"),
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
    (
        Target::Tenant,
        "tenant/07-operator-rbac.yaml",
        include_str!("../templates/tenant/07-operator-rbac.yaml"),
    ),
    (
        Target::Tenant,
        AGENT_SECRET_TEMPLATE,
        include_str!("../templates/tenant/08-konnectivity-agent-secret.json"),
    ),
    (
        Target::Tenant,
        "tenant/09-konnectivity-agent.yaml",
        include_str!("../templates/tenant/09-konnectivity-agent.yaml"),
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
    registry.register_helper("json", Box::new(crate::json_helper));
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

    /// Whether the operator may not write it with its own tenant credential:
    /// its own RBAC, and the bindings to cluster-admin and kubelet-api-admin.
    /// Those are applied with super-admin, only when they change.
    pub fn is_privileged(&self) -> bool {
        is_privileged(&self.value)
    }

    /// Whether the object holds private keys or tokens.
    pub fn is_secret(&self) -> bool {
        self.kind == "Secret"
    }
}

/// Whether a tenant object carries the privileged label
/// (`gantry.dev/privileged: "true"`): only super-admin writes it.
pub fn is_privileged(object: &Value) -> bool {
    object["metadata"]["labels"][gantry_api::labels::PRIVILEGED_LABEL] == "true"
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
        "secrets": secrets.iter().map(|s| json!({"name": s.name, "data": s.data, "create_only": s.create_only})).collect::<Vec<_>>(),
        "konnectivity_agent": agent_secret_data(input, &secrets),
    }))?;
    let render_one = |index: usize| {
        let (target, name, _) = TEMPLATES[index];
        let data = if name == SECRETS_TEMPLATE || name == AGENT_SECRET_TEMPLATE {
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

/// The data of the agent's Secret in the tenant (`tls.crt`, `tls.key`,
/// `ca.crt`, base64), or `null` when the tunnel is off.
fn agent_secret_data(input: &RenderInput, secrets: &[crate::secrets::SecretData]) -> Value {
    if input.konnectivity.is_none() {
        return Value::Null;
    }
    let find = |name: &str| secrets.iter().find(|s| s.name == name).map(|s| &s.data);
    let (Some(agent), Some(ca)) = (find("konnectivity-agent"), find("ca")) else {
        return Value::Null;
    };
    json!({
        "tls.crt": agent["tls.crt"],
        "tls.key": agent["tls.key"],
        "ca.crt": ca["ca.crt"],
    })
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
