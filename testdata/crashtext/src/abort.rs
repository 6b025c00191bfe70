struct Guard;
impl Drop for Guard {
    fn drop(&mut self) {
        panic!("panic in drop");
    }
}
fn main() {
    let _g = Guard;
    panic!("first panic");
}
