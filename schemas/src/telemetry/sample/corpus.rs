//! The words sample telemetry is made of: what a Spring Boot service and a few native services
//! on Kubernetes nodes look like to a runtime agent.

/// (application, Kubernetes namespace, executable, runs on the JVM).
#[rustfmt::skip]
pub const APPS: &[(&str, &str, &str, bool)] = &[
    ("shop-api", "shop", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", true),
    ("checkout", "shop", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", true),
    ("payments", "payments", "/opt/java/openjdk/bin/java", true),
    ("catalog", "shop", "/opt/java/openjdk/bin/java", true),
    ("auth-service", "identity", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", true),
    ("edge-proxy", "ingress", "/usr/sbin/nginx", false),
    ("image-resizer", "media", "/usr/local/bin/resizer", false),
];

pub const CPU_MODELS: &[&str] = &[
    "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
    "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
    "AMD EPYC 7R13 Processor",
    "AMD EPYC 7B12",
    "Neoverse-N1",
];

/// (OS name, version, version suffix of its packages).
pub const OS_RELEASES: &[(&str, &str, &str)] = &[
    ("Ubuntu", "22.04", "ubuntu0.22.04.1"),
    ("Debian GNU/Linux", "12", "+deb12u1"),
    ("Red Hat Enterprise Linux", "9.3", ".el9_3"),
    ("Amazon Linux", "2023", ".amzn2023"),
];

pub const CLOUDS: &[&str] = &["aws", "aws", "gcp", "azure"];
pub const RUNTIMES: &[&str] = &["containerd", "containerd", "cri-o", "docker"];

/// JVM and system libraries: (path, soname, version).
#[rustfmt::skip]
pub const LIBRARIES: &[(&str, &str, &str)] = &[
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6", "2.35"),
    ("/usr/lib/x86_64-linux-gnu/libm.so.6", "libm.so.6", "2.35"),
    ("/usr/lib/x86_64-linux-gnu/libz.so.1.2.11", "libz.so.1", "1.2.11"),
    ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "libssl.so.3", "3.0.2"),
    ("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "libcrypto.so.3", "3.0.2"),
    ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", "libstdc++.so.6", "12.3.0"),
    ("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1", "libgcc_s.so.1", "12.3.0"),
    ("/usr/lib/x86_64-linux-gnu/libnss_dns.so.2", "libnss_dns.so.2", "2.35"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "libjvm.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libjava.so", "libjava.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libnet.so", "libnet.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libnio.so", "libnio.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libzip.so", "libzip.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libjimage.so", "libjimage.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libextnet.so", "libextnet.so", "17.0.10"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libmanagement.so", "libmanagement.so", "17.0.10"),
    ("/tmp/libnetty_transport_native_epoll_x86_64.so", "libnetty_transport_native_epoll_x86_64.so", "4.1.107"),
];

/// Jars inside the application's fat jar: (artifact, version).
#[rustfmt::skip]
pub const JARS: &[(&str, &str)] = &[
    ("spring-core", "6.1.4"),
    ("spring-beans", "6.1.4"),
    ("spring-context", "6.1.4"),
    ("spring-web", "6.1.4"),
    ("spring-webmvc", "6.1.4"),
    ("spring-boot", "3.2.3"),
    ("spring-boot-autoconfigure", "3.2.3"),
    ("tomcat-embed-core", "10.1.19"),
    ("tomcat-embed-websocket", "10.1.19"),
    ("jackson-databind", "2.15.4"),
    ("jackson-core", "2.15.4"),
    ("jackson-annotations", "2.15.4"),
    ("snakeyaml", "2.2"),
    ("logback-classic", "1.4.14"),
    ("logback-core", "1.4.14"),
    ("slf4j-api", "2.0.12"),
    ("micrometer-core", "1.12.3"),
    ("hibernate-validator", "8.0.1.Final"),
    ("postgresql", "42.6.1"),
    ("HikariCP", "5.0.1"),
    ("guava", "32.1.2-jre"),
    ("netty-handler", "4.1.107.Final"),
];

/// OS packages: (package, source package).
#[rustfmt::skip]
pub const PACKAGES: &[(&str, &str)] = &[
    ("adduser", "adduser"), ("apt", "apt"), ("base-files", "base-files"),
    ("base-passwd", "base-passwd"), ("bash", "bash"), ("bsdutils", "util-linux"),
    ("ca-certificates", "ca-certificates"), ("coreutils", "coreutils"), ("dash", "dash"),
    ("debconf", "debconf"), ("debianutils", "debianutils"), ("diffutils", "diffutils"),
    ("dpkg", "dpkg"), ("e2fsprogs", "e2fsprogs"), ("findutils", "findutils"),
    ("fontconfig-config", "fontconfig"), ("fonts-dejavu-core", "fonts-dejavu"),
    ("gcc-12-base", "gcc-12"), ("gpgv", "gnupg2"), ("grep", "grep"), ("gzip", "gzip"),
    ("hostname", "hostname"), ("init-system-helpers", "init-system-helpers"),
    ("java-common", "java-common"), ("libacl1", "acl"), ("libapt-pkg6.0", "apt"),
    ("libasound2", "alsa-lib"), ("libattr1", "attr"), ("libaudit1", "audit"),
    ("libblkid1", "util-linux"), ("libbz2-1.0", "bzip2"), ("libc-bin", "glibc"),
    ("libc6", "glibc"), ("libcap-ng0", "libcap-ng"), ("libcap2", "libcap2"),
    ("libcom-err2", "e2fsprogs"), ("libcrypt1", "libxcrypt"), ("libcups2", "cups"),
    ("libdb5.3", "db5.3"), ("libdbus-1-3", "dbus"), ("libdebconfclient0", "cdebconf"),
    ("libexpat1", "expat"), ("libext2fs2", "e2fsprogs"), ("libffi8", "libffi"),
    ("libfontconfig1", "fontconfig"), ("libfreetype6", "freetype"), ("libgcc-s1", "gcc-12"),
    ("libgcrypt20", "libgcrypt20"), ("libgmp10", "gmp"), ("libgnutls30", "gnutls28"),
    ("libgpg-error0", "libgpg-error"), ("libgssapi-krb5-2", "krb5"), ("libharfbuzz0b", "harfbuzz"),
    ("libhogweed6", "nettle"), ("libidn2-0", "libidn2"), ("libjpeg-turbo8", "libjpeg-turbo"),
    ("libk5crypto3", "krb5"), ("libkeyutils1", "keyutils"), ("libkrb5-3", "krb5"),
    ("libkrb5support0", "krb5"), ("liblcms2-2", "lcms2"), ("liblz4-1", "lz4"),
    ("liblzma5", "xz-utils"), ("libmd0", "libmd"), ("libmount1", "util-linux"),
    ("libncurses6", "ncurses"), ("libnettle8", "nettle"), ("libnsl2", "libnsl"),
    ("libnss3", "nss"), ("libp11-kit0", "p11-kit"), ("libpam-modules", "pam"),
    ("libpam-runtime", "pam"), ("libpam0g", "pam"), ("libpcre2-8-0", "pcre2"),
    ("libpcsclite1", "pcsc-lite"), ("libpng16-16", "libpng1.6"), ("libprocps8", "procps"),
    ("libseccomp2", "libseccomp"), ("libselinux1", "libselinux"), ("libsemanage2", "libsemanage"),
    ("libsepol2", "libsepol"), ("libsmartcols1", "util-linux"), ("libsqlite3-0", "sqlite3"),
    ("libss2", "e2fsprogs"), ("libssl3", "openssl"), ("libstdc++6", "gcc-12"),
    ("libsystemd0", "systemd"), ("libtasn1-6", "libtasn1-6"), ("libtinfo6", "ncurses"),
    ("libtirpc3", "libtirpc"), ("libudev1", "systemd"), ("libunistring2", "libunistring"),
    ("libuuid1", "util-linux"), ("libx11-6", "libx11"), ("libxau6", "libxau"),
    ("libxcb1", "libxcb"), ("libxdmcp6", "libxdmcp"), ("libxext6", "libxext"), ("libxi6", "libxi"),
    ("libxrender1", "libxrender"), ("libxtst6", "libxtst"), ("libxxhash0", "xxhash"),
    ("libzstd1", "libzstd"), ("login", "shadow"), ("logsave", "e2fsprogs"), ("mawk", "mawk"),
    ("mount", "util-linux"), ("ncurses-base", "ncurses"), ("ncurses-bin", "ncurses"),
    ("netbase", "netbase"), ("openjdk-17-jre-headless", "openjdk-17"), ("openssl", "openssl"),
    ("passwd", "shadow"), ("perl-base", "perl"), ("procps", "procps"), ("sed", "sed"),
    ("sensible-utils", "sensible-utils"), ("sysvinit-utils", "sysvinit"), ("tar", "tar"),
    ("tzdata", "tzdata"), ("usrmerge", "usrmerge"), ("util-linux", "util-linux"),
    ("zlib1g", "zlib"),
];

/// Suffixes that turn a package above into a sibling package of the same source.
pub const PACKAGE_VARIANTS: &[&str] = &["", "-common", "-data", "-bin"];

pub const LICENSES: &[&str] = &[
    "GPL-2.0-or-later",
    "LGPL-2.1-or-later",
    "GPL-3.0-or-later",
    "MIT",
    "BSD-3-Clause",
    "Apache-2.0",
    "Zlib",
    "public-domain",
];

/// Environment of a service container: (name, value). HOSTNAME is added per process.
pub const JAVA_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "PATH",
        "/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("JAVA_HOME", "/opt/java/openjdk"),
    ("JAVA_VERSION", "jdk-17.0.10+7"),
    ("LANG", "en_US.UTF-8"),
    ("LC_ALL", "en_US.UTF-8"),
    ("HOME", "/home/app"),
    (
        "JAVA_TOOL_OPTIONS",
        "-XX:MaxRAMPercentage=75.0 -XX:+ExitOnOutOfMemoryError",
    ),
    ("SPRING_PROFILES_ACTIVE", "prod,kubernetes"),
    (
        "SPRING_DATASOURCE_URL",
        "jdbc:postgresql://orders-db.shop.svc:5432/orders",
    ),
    ("SPRING_DATASOURCE_USERNAME", "orders_app"),
    ("SPRING_DATASOURCE_PASSWORD", "s3cr3t-Pa55w0rd-rotated-2024"),
    ("SERVER_PORT", "8080"),
    ("MANAGEMENT_SERVER_PORT", "8081"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://otel-collector.observability:4317",
    ),
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
    ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
    ("KUBERNETES_PORT_443_TCP_PORT", "443"),
    ("LD_PRELOAD", "/opt/agent/lib/libagent.so"),
];

/// Memory maps of a process at start, beside its executable: (size in pages, perms, path).
#[rustfmt::skip]
pub const MAPS: &[(i64, &str, Option<&str>)] = &[
    (1, "r--p", None),
    (1, "r-xp", None),
    (1, "rw-p", Some("[heap]")),
    (4096, "rw-p", None),
    (5376, "r-xp", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so")),
    (48, "rw-p", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so")),
    (40, "r-xp", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/libjava.so")),
    (394, "r-xp", Some("/usr/lib/x86_64-linux-gnu/libc.so.6")),
    (1, "r--p", Some("/usr/lib/x86_64-linux-gnu/libc.so.6")),
    (4, "rw-p", Some("/usr/lib/x86_64-linux-gnu/libc.so.6")),
    (24, "r-xp", Some("/usr/lib/x86_64-linux-gnu/libz.so.1.2.11")),
    (1, "rw-p", Some("/usr/lib/x86_64-linux-gnu/libz.so.1.2.11")),
    (132, "r-xp", Some("/usr/lib/x86_64-linux-gnu/libm.so.6")),
    (26, "r-xp", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/libnet.so")),
    (18, "r-xp", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/libnio.so")),
    (22, "r-xp", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/libzip.so")),
    (16, "r-xp", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/libjimage.so")),
    (48, "r-xp", Some("/opt/agent/lib/libagent.so")),
    (10, "r--s", Some("/usr/lib/jvm/java-17-openjdk-amd64/lib/modules")),
    (38, "r-xp", Some("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")),
    (2, "r--p", Some("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")),
    (1, "rw-p", Some("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")),
    (33, "rw-p", Some("[stack]")),
    (4, "r--p", Some("[vvar]")),
    (2, "r-xp", Some("[vdso]")),
];

/// Java frames (JIT-compiled code has no file behind it, so no module), outermost last.
pub const JAVA_FRAMES: &[&str] = &[
    "org.springframework.web.servlet.DispatcherServlet.doDispatch",
    "org.springframework.web.servlet.DispatcherServlet.doService",
    "org.springframework.web.servlet.FrameworkServlet.processRequest",
    "org.springframework.web.servlet.FrameworkServlet.doGet",
    "org.springframework.web.filter.OncePerRequestFilter.doFilter",
    "org.springframework.web.filter.RequestContextFilter.doFilterInternal",
    "org.springframework.web.method.support.InvocableHandlerMethod.invokeForRequest",
    "org.springframework.boot.loader.launch.JarLauncher.main",
    "org.springframework.context.support.AbstractApplicationContext.refresh",
    "org.springframework.beans.factory.support.DefaultListableBeanFactory.preInstantiateSingletons",
    "org.apache.catalina.core.ApplicationFilterChain.internalDoFilter",
    "org.apache.catalina.core.StandardWrapperValve.invoke",
    "org.apache.catalina.connector.CoyoteAdapter.service",
    "org.apache.coyote.http11.Http11Processor.service",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun",
    "org.apache.tomcat.util.threads.ThreadPoolExecutor$Worker.run",
    "com.zaxxer.hikari.pool.HikariPool.getConnection",
    "com.fasterxml.jackson.databind.ObjectMapper.readValue",
    "ch.qos.logback.core.rolling.RollingFileAppender.subAppend",
    "com.example.shop.orders.OrderController.placeOrder",
    "com.example.shop.orders.OrderService.checkout",
    "java.lang.Thread.run",
];

pub const JAVA_FILE_FRAMES: &[&str] = &[
    "java.io.FileInputStream.open0",
    "java.io.FileInputStream.open",
    "java.io.FileInputStream.<init>",
    "sun.nio.fs.UnixChannelFactory.newFileChannel",
    "java.nio.file.Files.newInputStream",
    "org.springframework.core.io.FileSystemResource.getInputStream",
];

pub const JAVA_NET_FRAMES: &[&str] = &[
    "java.net.Inet6AddressImpl.lookupAllHostAddr",
    "java.net.InetAddress$PlatformNameService.lookupAllHostAddr",
    "java.net.InetAddress.getAddressesFromNameService",
    "java.net.InetAddress.getAllByName0",
    "java.net.InetAddress.getAllByName",
    "org.postgresql.core.PGStream.<init>",
];

/// Native frames: (module, symbol).
#[rustfmt::skip]
pub const NATIVE_FRAMES: &[(&str, &str)] = &[
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "__libc_start_main"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "__GI___libc_open"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "__memcpy_avx_unaligned_erms"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "getaddrinfo"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "__connect"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "strcpy"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "JavaCalls::call_helper"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/libnet.so", "NET_Connect"),
    ("/usr/sbin/nginx", "ngx_http_process_request"),
    ("/usr/sbin/nginx", "ngx_epoll_process_events"),
    ("/usr/local/bin/resizer", "resize_jpeg"),
    ("/usr/local/bin/resizer", "handle_upload"),
];

pub const FILE_PATHS: &[&str] = &[
    "/app/config/application-prod.yml",
    "/app/BOOT-INF/classes/application.yml",
    "/var/log/app/application.log",
    "/tmp/tomcat.8080.4312279155638715443/work/Tomcat/localhost/ROOT",
    "/proc/self/cgroup",
    "/sys/fs/cgroup/memory.max",
    "/etc/resolv.conf",
    "/etc/ssl/certs/ca-certificates.crt",
    "/opt/java/openjdk/lib/security/cacerts",
    "/var/cache/images/thumbnails/5f/5f0c6f0e.jpg",
];

pub const FILE_OPERATIONS: &[&str] = &[
    "open", "open", "open", "read", "write", "stat", "rename", "unlink", "truncate", "mkdir",
];

/// Names the services resolve.
pub const FQDNS: &[&str] = &[
    "orders-db.shop.svc.cluster.local",
    "payments-gateway.payments.svc.cluster.local",
    "api.stripe.com",
    "sts.eu-west-1.amazonaws.com",
    "otel-collector.observability.svc.cluster.local",
    "repo.maven.apache.org",
];

/// (class, method, arguments) of observed Java APIs.
#[rustfmt::skip]
pub const JAVA_APIS: &[(&str, &str, &[&str])] = &[
    ("javax.crypto.Cipher", "getInstance", &["AES/GCM/NoPadding"]),
    ("java.security.MessageDigest", "getInstance", &["SHA-1"]),
    ("java.lang.Class", "forName", &["org.postgresql.Driver", "true"]),
    ("java.lang.reflect.Method", "invoke", &["com.example.shop.orders.OrderController.placeOrder"]),
    ("javax.naming.InitialContext", "lookup", &["java:comp/env/jdbc/orders"]),
    ("java.lang.Runtime", "loadLibrary0", &["netty_transport_native_epoll_x86_64"]),
];

/// (method, URI) served by the web applications.
#[rustfmt::skip]
pub const URIS: &[(&str, &str)] = &[
    ("GET", "/api/v1/products?page=2&size=50"),
    ("GET", "/api/v1/products/8812"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders/5f0c6f0e-7a1d-4c62-9d7e-1a0b2c3d4e01/status"),
    ("PUT", "/api/v1/cart/items/42"),
    ("GET", "/actuator/health/readiness"),
];

#[rustfmt::skip]
pub const MEMORY_WARNINGS: &[(&str, &str)] = &[
    ("unsafe_function", "strcpy"),
    ("unsafe_function", "sprintf"),
    ("buffer_overflow", "memcpy"),
    ("use_after_free", "free"),
    ("double_free", "free"),
    ("executable_stack", "mprotect"),
];

pub const IDENTITY_CHANGES: &[&str] = &["setuid", "setgid", "seteuid", "setegid", "setresuid"];
