use ctxkit::cancellable;

#[cancellable]
struct Server {
    port: u16,
}

fn main() {
    let _ = Server { port: 80 }.port;
}
