use ctxkit::cancellable;

mod app {
    pub struct Context {
        pub user: String,
    }
}
use app::Context;

#[cancellable]
async fn greet(ctx: &Context) -> Result<String, ctxkit::Error> {
    Ok(format!("hello {}", ctx.user))
}

fn main() {
    let _ = greet(&Context { user: "gopher".into() });
}
