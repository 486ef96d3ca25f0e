use ctxkit::cancellable;

trait Store {
    async fn load(&self) -> u32;
}

struct Memory;

impl Store for Memory {
    #[cancellable]
    async fn load(&self) -> u32 {
        1
    }
}

fn main() {}
