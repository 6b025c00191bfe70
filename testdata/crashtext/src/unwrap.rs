use std::collections::HashMap;

struct Cart {
    items: HashMap<String, u32>,
}

impl Cart {
    fn quantity(&self, sku: &str) -> u32 {
        *self.items.get(sku).unwrap()
    }
}

fn checkout(cart: &Cart) -> u32 {
    cart.quantity("sku-42")
}

fn main() {
    eprintln!("2026-11-26T12:00:00Z INFO shop: starting checkout");
    let cart = Cart { items: HashMap::new() };
    println!("{}", checkout(&cart));
}
