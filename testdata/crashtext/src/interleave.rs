// A worker thread prints a counter to stdout while main panics; with stdout
// and stderr on one pipe (`2>&1`, as a container runtime collects them) its
// lines land among the backtrace's frames, which std writes one by one.
use std::thread;
use std::time::Duration;

fn reserve(stock: i64) -> u64 {
    if stock < 0 {
        panic!("stock for sku 4711 is negative: {stock}");
    }
    stock as u64
}

fn main() {
    thread::spawn(|| {
        let mut i = 0u64;
        loop {
            println!("count is {i}");
            i += 1;
            thread::sleep(Duration::from_millis(1));
        }
    });
    thread::sleep(Duration::from_millis(5));
    println!("{}", reserve(std::hint::black_box(-3)));
}
