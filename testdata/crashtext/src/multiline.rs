#[derive(Debug)]
#[allow(dead_code)]
struct ValidationError {
    field: &'static str,
    reason: String,
}

fn validate() -> Result<(), ValidationError> {
    Err(ValidationError { field: "email", reason: "missing @".into() })
}

fn main() {
    if let Err(e) = validate() {
        panic!("validation failed:\n{e:#?}\nend of report");
    }
}
