use ctxkit::{Error, cancellable};

trait Store {
    #[cancellable]
    async fn load(&self, key: &str) -> Result<String, Error>;
}

fn main() {}
