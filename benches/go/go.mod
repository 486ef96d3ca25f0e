module ctxkit.bench/gocontext

go 1.19
