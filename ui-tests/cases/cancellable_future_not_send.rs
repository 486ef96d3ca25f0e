use std::rc::Rc;

use ctxkit::cancellable;

#[cancellable]
async fn hold_rc() -> Result<(), ctxkit::Error> {
    let rc = Rc::new(1);
    tokio::task::yield_now().await;
    drop(rc);
    Ok(())
}

fn main() {
    tokio::spawn(hold_rc());
}
