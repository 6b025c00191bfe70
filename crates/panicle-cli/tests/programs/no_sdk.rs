// A Rust program built without the Panicle SDK: its panic reaches Panicle
// only through `panicle run`.
use std::collections::HashMap;

fn lookup(stock: &HashMap<&str, u32>, sku: &str) -> u32 {
    *stock.get(sku).unwrap()
}

fn main() {
    println!("billing starting");
    let stock = HashMap::from([("a", 1)]);
    let n = lookup(&stock, std::hint::black_box("missing"));
    println!("{n}");
}
