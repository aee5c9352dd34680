# ruff: noqa: RUF001, RUF002, E501 - Chinese prose uses full-width punctuation and long lines
"""配置字段的中文说明，供 ``.. config-fields:: … :lang: zh`` 使用（docs/_ext/ltdb_docs.py）。

缺少某个字段的说明时，文档构建会给出警告；``-W`` 下即构建失败，所以新增字段时请在这里补上说明。
"""

DESCRIPTIONS: dict[str, str] = {
    # DatabaseConfig
    "DatabaseConfig.type": "数据库类型；给了 ``url`` 时由 URL 推断。",
    "DatabaseConfig.connection": "主机、端口、库名等连接参数。",
    "DatabaseConfig.credentials": "用户名和密码。",
    "DatabaseConfig.pool": "主库连接池设置（副本未单独设置时沿用）。",
    "DatabaseConfig.read_write": "读写分离（只读副本路由）。",
    "DatabaseConfig.url": "上面几项的简写；其中的密码永远不会被打印。",
    "DatabaseConfig.echo": "记录每一条 SQL（SQLAlchemy 的 ``echo``）。",
    "DatabaseConfig.statement_timeout": (
        "每个会话的 PostgreSQL ``statement_timeout``，单位秒（至少 0.001）；``None`` 表示沿用服务器设置。"
        "服务器不再应答的情况由 ``connection.command_timeout`` 限制。"
        "不能与 PgBouncer 一起使用，因为它不转发启动参数（请按角色设置）。"
    ),
    "DatabaseConfig.isolation_level": '所有事务的默认隔离级别（``"READ COMMITTED"``、``"SERIALIZABLE"`` 等）。',
    "DatabaseConfig.slow_query_seconds": "执行时间超过此值（秒）的语句计为慢查询。",
    "DatabaseConfig.statement_stats": "统计语句数、错误数、慢查询、提交与回滚（通过方言的执行钩子，每个请求只需几微秒 CPU，见 :mod:`litestar_db.instrument`）；连接池数据始终保留。",
    "DatabaseConfig.request": "Litestar 请求事务的设置。",
    "DatabaseConfig.health": "健康检查控制器与探测的设置。",
    "DatabaseConfig.migrations": "Alembic 迁移的设置。",
    # ConnectionConfig
    "ConnectionConfig.host": "服务器主机名或地址（PostgreSQL）。",
    "ConnectionConfig.port": "服务器 TCP 端口，1–65535（PostgreSQL）。",
    "ConnectionConfig.database": '库名（PostgreSQL）或文件路径（SQLite；``":memory:"`` 为内存库）。',
    "ConnectionConfig.application_name": '显示在 ``pg_stat_activity.application_name`` 中；默认 ``"litestar_db"``。',
    "ConnectionConfig.connect_timeout": "建立新连接时最多等待的秒数。",
    "ConnectionConfig.command_timeout": (
        "每次调用在客户端的上限，单位秒（asyncpg 的 ``command_timeout``）：服务器不再应答时（主机冻结、网络黑洞，"
        "服务器端超时不会触发）返回 503 而不是一直挂起。请设置得大于 ``statement_timeout`` 以及路由用 ``SET LOCAL`` "
        "调高的任何超时；``None`` 表示不限制。"
    ),
    "ConnectionConfig.pgbouncer": "经由事务模式的 PgBouncer 连接时打开：关闭 asyncpg 的预编译语句缓存，"
    "并给每条预编译语句唯一的名字（URL 中写 ``?pgbouncer=true`` 效果相同）。",
    # CredentialsConfig
    "CredentialsConfig.username": "角色名；``None`` 时使用驱动的默认值（操作系统用户）。",
    "CredentialsConfig.password": "密码；任何输出中都不会出现。",
    # PoolConfig
    "PoolConfig.min_size": "连接池中常驻的连接数（SQLAlchemy 的 ``pool_size``）。",
    "PoolConfig.max_size": "同时存在的连接数上限（含溢出连接）。",
    "PoolConfig.max_overflow": "超出 ``min_size`` 的连接数；为 ``None`` 时由 ``max_size`` 推算。",
    "PoolConfig.timeout": "取连接时最多等待的秒数，超时即失败（请求中返回 503）。",
    "PoolConfig.recycle": "连接使用超过此秒数后，在下次取用时被替换；``-1`` 表示不回收。",
    "PoolConfig.pre_ping": "取用连接时先检测，服务器已断开的连接会被替换。",
    "PoolConfig.reset_on_return": "连接归还连接池时的处理（除非确有理由，保持 ``rollback``）。",
    "PoolConfig.echo_pool": "记录连接的取出与归还。",
    # ReplicaConfig
    "ReplicaConfig.url": "``postgresql://user:pass@host:port/db``；也可以改用 ``connection``/``credentials``。",
    "ReplicaConfig.connection": "连接参数；``credentials`` 为 ``None`` 时沿用主库的登录信息。",
    "ReplicaConfig.credentials": "此副本的登录信息；为 ``None`` 时沿用主库的。",
    "ReplicaConfig.name": "在统计、健康检查和指标中使用的名字；默认 ``replica<N>``。",
    "ReplicaConfig.weight": "分得读请求的相对比例（3 和 1 即 3:1）。",
    "ReplicaConfig.pool": "此副本的连接池设置；为 ``None`` 时沿用主库的。",
    # ReadWriteConfig
    "ReadWriteConfig.enable_read_write_split": "把读操作路由到副本；为 ``False`` 时一切都走主库。",
    "ReadWriteConfig.replicas": "副本列表，每个副本有自己的连接池。",
    "ReadWriteConfig.strategy": "在健康的副本中如何挑选（权重对 ``round_robin`` 和 ``random`` 生效）。",
    "ReadWriteConfig.max_lag_seconds": "回放延迟超过此秒数的副本会被摘除；``None`` 表示不检查。",
    "ReadWriteConfig.max_lag_bytes": "落后主库超过此字节数 WAL 的副本会被摘除；``None`` 表示不检查。",
    "ReadWriteConfig.sticky_seconds": "拿不到 WAL 位置时，客户端写入后在这段时间（秒）内从主库读。",
    "ReadWriteConfig.failure_cooldown_seconds": "被摘除的副本在这段时间（秒）后才会再次被探测。",
    "ReadWriteConfig.fallback_to_primary": "没有健康副本时改从主库读（否则抛出 ``DatabaseUnavailableError``）。",
    "ReadWriteConfig.monitor_interval_seconds": "对每个副本做延迟与健康探测的间隔（秒）。",
    "ReadWriteConfig.token_transport": "“读己之写”令牌如何传给客户端：cookie 或请求头。",
    "ReadWriteConfig.token_name": "“读己之写”令牌的 cookie 名或请求头名。",
    "ReadWriteConfig.token_secret": "签名令牌的 HMAC 密钥；为 ``None`` 时每个进程随机生成（多实例部署时务必设置）。",
    # RequestConfig
    "RequestConfig.autocommit": "响应成功时提交请求的会话；可以通过路由的 ``opt`` 单独关闭。",
    "RequestConfig.commit_on_redirect": "3xx 响应也提交。",
    "RequestConfig.session_dependency_key": "处理函数接收请求 ``AsyncSession`` 时使用的依赖名。",
    "RequestConfig.engine_dependency_key": "处理函数接收主库 ``AsyncEngine`` 时使用的依赖名。",
    "RequestConfig.read_only_methods": "这些 HTTP 方法的请求可以从副本读（开启读写分离时）。",
    "RequestConfig.lazy_begin": (
        "这些只读方法的请求执行普通读时不发 ``BEGIN``/``COMMIT``，遇到第一条写语句才开启事务"
        "（见 :mod:`litestar_db.lazy_begin`）；仅在默认隔离级别为 READ COMMITTED 时生效。"
    ),
    # HealthConfig
    "HealthConfig.enabled": "注册健康检查控制器。",
    "HealthConfig.path": "控制器的基础路径。",
    "HealthConfig.cache_seconds": "探测结果在这段时间（秒）内复用，密集的探测不会压到数据库上。",
    "HealthConfig.probe_timeout_seconds": "对单个引擎探测的时间上限（秒）。",
    "HealthConfig.retry_after_seconds": "就绪检查返回 503、或请求发现数据库不可用时附带的 ``Retry-After`` （秒）。",
    "HealthConfig.fail_on_pending_migrations": "数据库结构落后于迁移的最新版本时，就绪检查返回 503。",
    "HealthConfig.show_details": "谁能在 ``/health/ready`` 中看到详细字段（位置、连接池数字、测量值）："
    '``"authenticated"`` 表示应用的认证中间件设置了 ``request.user`` 时显示，也可以传入接收请求的判断函数。'
    "凭据和 URL 从不显示。",
    "HealthConfig.guards": "应用到两个健康检查路由上的 Litestar 守卫（例如只允许内网访问）。",
    # MigrationConfig
    "MigrationConfig.script_location": "存放 Alembic ``env.py`` 和 ``versions/`` 的目录。",
    "MigrationConfig.version_table_name": "记录已应用版本的表。",
    "MigrationConfig.migrate_on_startup": "应用开始服务前，在迁移锁的保护下升级到最新版本。",
}
