//! The service set as a Helm v2 chart archive (`.tgz`), packed with tar and
//! flate2. The manifests sit under `files/` and one template emits them with
//! `.Files.Get`, so Helm never interprets their content as templates: what
//! gantry rendered is what Helm installs, byte for byte.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::error::RenderError;
use crate::render::RenderedObject;
use crate::versions::KubeVersion;

/// `<name>-control-plane`.
pub fn chart_name(tenant: &str) -> String {
    format!("{tenant}-control-plane")
}

/// `<name>-control-plane-<version>.tgz`, as `helm package` names archives.
pub fn archive_name(tenant: &str, version: KubeVersion) -> String {
    format!("{}-{version}.tgz", chart_name(tenant))
}

/// The file name of object `index` of a set: `NN-<kind>-<name>.yaml`.
pub fn manifest_file_name(index: usize, object: &RenderedObject) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "{index:02}-{}-{}.yaml",
        clean(&object.kind),
        clean(&object.name)
    )
}

const TEMPLATE: &str = r#"{{- /* Emits the manifests gantry rendered, untouched. */}}
{{- range $path, $_ := .Files.Glob "files/*.yaml" }}
---
{{ $.Files.Get $path }}
{{- end }}
"#;

/// Packs `objects` (the service set) into a chart archive for `tenant`.
/// Deterministic: the same objects give the same bytes.
///
/// The Namespace stays out of the chart: the release is installed into it
/// (`helm install -n tcp-<name>`, so the release Secret, which holds every
/// key, lands beside the keys and not in `default`), and `helm uninstall`
/// must not delete it with etcd's volumes. The key Secrets carry
/// `helm.sh/resource-policy: keep`, so an uninstall leaves them too.
pub fn package(
    tenant: &str,
    version: KubeVersion,
    objects: &[RenderedObject],
) -> Result<Vec<u8>, RenderError> {
    let name = chart_name(tenant);
    let chart_yaml = format!(
        "apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{version}\"\n\
         description: Control plane of gantry tenant {tenant} (Kubernetes {version}), rendered by gantry\n\
         type: application\n"
    );
    let values = "# This chart takes no values: gantry rendered every object.\n";
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (format!("{name}/Chart.yaml"), chart_yaml.into_bytes()),
        (format!("{name}/values.yaml"), values.as_bytes().to_vec()),
        (
            format!("{name}/templates/manifests.yaml"),
            TEMPLATE.as_bytes().to_vec(),
        ),
    ];
    // Numbered as in the bundle's service/ folder.
    let in_chart = (objects.iter().enumerate()).filter(|(_, object)| object.kind != "Namespace");
    for (index, object) in in_chart {
        files.push((
            format!("{name}/files/{}", manifest_file_name(index, object)),
            object.to_yaml().as_bytes().to_vec(),
        ));
    }
    let failed = |e: std::io::Error| RenderError::Chart(e.to_string());
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    archive.mode(tar::HeaderMode::Deterministic);
    for (path, contents) in &files {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        archive
            .append_data(&mut header, path, contents.as_slice())
            .map_err(failed)?;
    }
    let mut gzip = archive.into_inner().map_err(failed)?;
    gzip.flush().map_err(failed)?;
    gzip.finish().map_err(failed)
}
