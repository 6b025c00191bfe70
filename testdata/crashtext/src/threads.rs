use std::thread;

fn parse_port(s: &str) -> u16 {
    s.parse().expect("invalid port in config")
}

fn main() {
    let h = thread::Builder::new()
        .name("config-loader".into())
        .spawn(|| {
            let v: Vec<u16> = vec![1, 2, 3];
            let i = v.len() + 4;
            v[i]
        })
        .unwrap();
    let r = h.join();
    eprintln!("worker finished: {:?}", r.is_err());
    let h2 = thread::spawn(|| parse_port("80a"));
    let _ = h2.join();
    eprintln!("still running after two panics");
    let port = parse_port("http");
    println!("{port}");
}
