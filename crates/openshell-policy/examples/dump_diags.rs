// temporary scratch tool; deleted after use
fn main() {
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("read");
        println!("== {path}");
        match openshell_policy::load_bytes(&path, &bytes) {
            Ok(p) => println!("OK {:?}", serde_json::to_string(&p).expect("json")),
            Err(e) => for d in e.diagnostics() { println!("{}:{} [{}] {}", d.line, d.column, d.key, d.message) },
        }
    }
}
