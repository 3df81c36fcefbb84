mod fixture;

use gantry_renderer::render;

#[test]
fn smoke() {
    let input = fixture::input();
    let rendered = render(&input, &fixture::pki(&input)).unwrap();
    for o in rendered.service.iter().chain(&rendered.tenant) {
        println!("{} {} {}", o.template, o.kind, o.name);
    }
}

#[test]
#[ignore]
fn dump() {
    let input = fixture::input();
    let rendered = render(&input, &fixture::pki(&input)).unwrap();
    for o in rendered.service.iter().chain(&rendered.tenant) {
        if ["StatefulSet", "Deployment", "ConfigMap", "Service"].contains(&o.kind.as_str())
            && o.name != "coredns"
        {
            println!("---\n{}", o.to_yaml());
        }
    }
}
