//! A corpus of secrets as processes leak them, and of look-alikes that are not secrets: the
//! specification of the detector, used by its unit tests, the end-to-end corpus test and the
//! redaction bench.
//!
//! Look-alikes are chosen to keep what analysts need: ordinary environment values, paths (a file
//! that *holds* a secret, `--password-file=/etc/x`, is a reference, not the secret), versions,
//! package names, UUIDs used as request ids and git object ids in paths (identifiers, not
//! credentials), Stripe *publishable* keys (public by design), `$VAR` references and URLs without
//! credentials.

/// Where a leaked secret sits.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Inside a string: an argument, a URI, a path, a message.
    Text(&'static str),
    /// An environment variable: name and value.
    Env(&'static str, &'static str),
    /// A process's arguments, one per element (`--password` then the value).
    Args(&'static [&'static str]),
}

/// A leaked secret: the rule that must catch it, where it sits, and the text that must not
/// survive anywhere.
#[derive(Debug, Clone, Copy)]
pub struct Leak {
    pub rule: &'static str,
    pub shape: Shape,
    pub secret: &'static str,
}

const fn text(rule: &'static str, text: &'static str, secret: &'static str) -> Leak {
    Leak {
        rule,
        shape: Shape::Text(text),
        secret,
    }
}

const fn env(name: &'static str, value: &'static str, secret: &'static str) -> Leak {
    Leak {
        rule: "environment name",
        shape: Shape::Env(name, value),
        secret,
    }
}

/// Secrets, one per shape the detector knows.
#[rustfmt::skip]
pub const LEAKS: &[Leak] = &[
    text("flag --k=v", "--password=Hunter2-corpus-01", "Hunter2-corpus-01"),
    text("flag --k v", "mysql -h db --password Hunter2-corpus-02 orders", "Hunter2-corpus-02"),
    Leak { rule: "flag, value in the next argument", shape: Shape::Args(&["mysql", "--password", "Corpus03-next-arg", "-h", "db"]), secret: "Corpus03-next-arg" },
    text("flag --k=v", "--api-key=ak-corpus-04-9f8e7d6c", "ak-corpus-04-9f8e7d6c"),
    text("flag --k=v", "--client-secret=cs-corpus-05-77aa", "cs-corpus-05-77aa"),
    text("-Dk=v", "java -Djavax.net.ssl.keyStorePassword=ksp-corpus-06 -jar app.jar", "ksp-corpus-06"),
    text("-Dk=v", "-Djavax.net.ssl.trustStorePassword=tsp-corpus-07", "tsp-corpus-07"),
    text("whole flag value after #", "--password=pw#Corpus08AfterHash;x", "Corpus08AfterHash;x"),
    text("k=v in a command line", "env DB_PASSWORD=dbpw-corpus-09 ./server --port 8080", "dbpw-corpus-09"),
    text("k=v in a command line", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/corpus10KEY aws s3 ls", "wJalrXUtnFEMI/K7MDENG/corpus10KEY"),
    text("putenv argument", "AWS_SECRET_ACCESS_KEY=corpus11PutenvSecretKey", "corpus11PutenvSecretKey"),
    text("URL userinfo", "postgresql://orders:pgpw-corpus-12@orders-db:5432/orders", "pgpw-corpus-12"),
    text("URL userinfo", "mongodb+srv://svc:mongo-corpus-13@cluster0.example.net/db?retryWrites=true", "mongo-corpus-13"),
    text("URL userinfo", "redis://:redispw-corpus-14@cache:6379/0", "redispw-corpus-14"),
    text("URL userinfo", "git clone https://x-access-token:corpus15TokenValue9@github.com/acme/repo.git", "corpus15TokenValue9"),
    text("Authorization header", "Authorization: Basic Y29ycHVzMTY6YmFzaWNwYXNz", "Y29ycHVzMTY6YmFzaWNwYXNz"),
    text("Authorization header", "Authorization: Bearer corpus17.Bearer-Token_value", "corpus17.Bearer-Token_value"),
    text("Authorization header", "curl -H \"Authorization: Bearer Corpus18OpaqueToken42\" https://api.example.com/v1", "Corpus18OpaqueToken42"),
    text("Bearer in text", "retrying with Bearer Corpus19TokenInText after 401", "Corpus19TokenInText"),
    text("JWT", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjb3JwdXMyMCJ9.c29ycHVzMjBzaWduYXR1cmU", "eyJzdWIiOiJjb3JwdXMyMCJ9.c29ycHVzMjBzaWduYXR1cmU"),
    text("JWT in a URI path", "/api/v1/session/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjb3JwdXMyMSJ9.Y29ycHVzMjFzaWc/refresh", "eyJzdWIiOiJjb3JwdXMyMSJ9.Y29ycHVzMjFzaWc"),
    text("JWT after ?jwt=", "/sso/callback?jwt=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjb3JwdXMyMiJ9.Y29ycHVzMjJzaWc&next=/home", "eyJzdWIiOiJjb3JwdXMyMiJ9.Y29ycHVzMjJzaWc"),
    text("query k=v", "/oauth/userinfo?access_token=corpus23AccessToken&fields=email", "corpus23AccessToken"),
    text("query k=v", "/token?client_secret=corpus24ClientSecret&grant_type=client_credentials", "corpus24ClientSecret"),
    text("X-Amz-Signature", "https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIACORPUS25XXXXXXXX%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e25", "c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e25"),
    text("AWS access key id", "aws configure set aws_access_key_id AKIACORPUS26ABCDEFGH", "AKIACORPUS26ABCDEFGH"),
    text("AWS access key id", "creds ASIACORPUS27ABCDEFGH expire soon", "ASIACORPUS27ABCDEFGH"),
    text("GitHub token", "ghp_Corpus28qsR6RZ24lPoQj3oPUlieI2nVsbBi", "ghp_Corpus28qsR6RZ24lPoQj3oPUlieI2nVsbBi"),
    text("GitHub token", "gh auth login --with-token gho_Corpus291RMar1jf3YZ4Zq0CVB8iY4qw2oF5", "gho_Corpus291RMar1jf3YZ4Zq0CVB8iY4qw2oF5"),
    text("GitHub token", "github_pat_11CORPUS30WJKBQx4BOuP_hw0MZOqSCJNViCRUCIlsmlHwqxDqMrz4iKFJpKp4mSxieBPO9DyaUB73coj", "github_pat_11CORPUS30WJKBQx4BOuP_hw0MZOqSCJNViCRUCIlsmlHwqxDqMrz4iKFJpKp4mSxieBPO9DyaUB73coj"),
    text("GitLab token", "glab auth login glpat-Corpus31FZS1COqkUAV3", "glpat-Corpus31FZS1COqkUAV3"),
    text("Slack token", "SLACK=xoxb-1234567890-1234567890123-Corpus32q4WZwmT2OxHTQi5T", "xoxb-1234567890-1234567890123-Corpus32q4WZwmT2OxHTQi5T"),
    text("Slack token", "xoxp-1234567890-1234567890-1234567890123-Corpus337f611ba59653752d", "xoxp-1234567890-1234567890-1234567890123-Corpus337f611ba59653752d"),
    text("Stripe key", "stripe.api_key = sk_live_Corpus34PMJZIScC0vPfHait", "sk_live_Corpus34PMJZIScC0vPfHait"),
    text("Stripe key", "rk_live_Corpus35hAt6rKMSe8EHx21c", "rk_live_Corpus35hAt6rKMSe8EHx21c"),
    text("private key block", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAcorpus36Body\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEAcorpus36Body"),
    env("TLS_KEY_PEM", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEcorpus37\n-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEcorpus37"),
    text("Google API key", "https://maps.googleapis.com/maps/api/geocode/json?address=x&key=AIzaCorpus38aOQt-8CALeWusH2BH2ETFK2AS2e", "AIzaCorpus38aOQt-8CALeWusH2BH2ETFK2AS2e"),
    text("private key in JSON", "{\"type\":\"service_account\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQcorpus39KeyBody\\n-----END PRIVATE KEY-----\\n\",\"client_email\":\"svc@acme.iam.gserviceaccount.com\"}", "MIIEvQcorpus39KeyBody"),
    text("JSON member", "{\"user\": \"app\", \"password\": \"corpus40JsonPw\"}", "corpus40JsonPw"),
    text("JSON member", "{\"apiKey\":\"corpus41JsonApiKey\",\"region\":\"eu\"}", "corpus41JsonApiKey"),
    text("k: v", "password: corpus42ColonPw", "corpus42ColonPw"),
    text("header k: v", "X-API-Key: corpus43HeaderKey", "corpus43HeaderKey"),
    env("DB_PASSWORD", "plainword44", "plainword44"),
    env("GITHUB_TOKEN", "corpus45-env-token", "corpus45-env-token"),
    env("AWS_SECRET_ACCESS_KEY", "corpus46SecretAccessKeyValue", "corpus46SecretAccessKeyValue"),
    env("SPRING_DATASOURCE_PASSWORD", "s3cr3t-corpus-47", "s3cr3t-corpus-47"),
    Leak { rule: "URL userinfo in an environment value", shape: Shape::Env("DATABASE_URL", "postgres://app:corpus48DbPw@db:5432/app"), secret: "corpus48DbPw" },
    Leak { rule: "npm token in an environment value", shape: Shape::Env("NPM_CONFIG_REGISTRY_AUTH", "npm_Corpus49XZ20rCaA6iTaOHipwjB5BbwxvWwV"), secret: "npm_Corpus49XZ20rCaA6iTaOHipwjB5BbwxvWwV" },
    text("putenv argument", "DB_PASSWORD=corpus50Putenv", "corpus50Putenv"),
    text("single-dash flag, next word", "keytool -importkeystore -storepass corpus51StorePass -noprompt", "corpus51StorePass"),
    text("flag --k=v", "--token=corpus52Token", "corpus52Token"),
    text("flag --k=v", "--auth=admin:corpus53AuthPw", "corpus53AuthPw"),
    Leak { rule: "flag, value in the next argument", shape: Shape::Args(&["vault", "login", "--secret", "corpus54NextSecret"]), secret: "corpus54NextSecret" },
    text("connection string k=v", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=Corpus55AzureKey0123456789abcdef==;EndpointSuffix=core.windows.net", "Corpus55AzureKey0123456789abcdef=="),
    text("random value of sig=", "https://acme.blob.core.windows.net/c/b?sv=2022-11-02&sr=b&sig=Corpus56SasSig0123456789abcdefXYZ%3D", "Corpus56SasSig0123456789abcdefXYZ%3D"),
    text("webhook URL", "https://hooks.slack.com/services/T00000000/B00000000/Corpus57WebhookSecret", "Corpus57WebhookSecret"),
    text("SendGrid key", "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", "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"),
    text("OpenAI key", "openai.api_key=sk-proj-Corpus59uk54IVi5a5p63RjfE7xewqZ0ndTpQ07pHY6WCmKz", "sk-proj-Corpus59uk54IVi5a5p63RjfE7xewqZ0ndTpQ07pHY6WCmKz"),
    text("Anthropic key", "sk-ant-api03-Corpus60ggorVYMtMHlVgdvbnIlQ2uLfomNZX8XItt5MadHJQCFV1u90Ht77yW8yde9wqnarNk-hB2dcsMtg2GC_AA", "sk-ant-api03-Corpus60ggorVYMtMHlVgdvbnIlQ2uLfomNZX8XItt5MadHJQCFV1u90Ht77yW8yde9wqnarNk-hB2dcsMtg2GC_AA"),
    text("Vault token", "vault read -token hvs.Corpus61bMgpuHGaKC5W6vPoMdHS", "hvs.Corpus61bMgpuHGaKC5W6vPoMdHS"),
    text("Hugging Face token", "hf_Corpus62Bp6GVagx6j7D0w1iRwUoQsLfqT", "hf_Corpus62Bp6GVagx6j7D0w1iRwUoQsLfqT"),
    text("DigitalOcean token", "doctl auth init -t dop_v1_c04453140ebcfd2e8ac36ac2fd90ecdf128604a96d9062342c6a5055117d5d2f", "dop_v1_c04453140ebcfd2e8ac36ac2fd90ecdf128604a96d9062342c6a5055117d5d2f"),
    text("age key", "AGE-SECRET-KEY-1CORPUS646JHDWD77LF1T0TPQS90SRNGFKDHQJOTGG52GC80I4O4VXHA5FG", "AGE-SECRET-KEY-1CORPUS646JHDWD77LF1T0TPQS90SRNGFKDHQJOTGG52GC80I4O4VXHA5FG"),
    text("Cookie header", "Cookie: session=Corpus65SessionCookie; theme=dark", "Corpus65SessionCookie"),
    text("Authorization header", "Proxy-Authorization: Basic Y29ycHVzNjY6cHJveHk=", "Y29ycHVzNjY6cHJveHk="),
    text("query k=v", "/feed?token=corpus67QueryToken&page=1", "corpus67QueryToken"),
    text("query k=v", "/v2/search?apikey=corpus68ApiKey", "corpus68ApiKey"),
    text("query k=v", "/o?X-Amz-Security-Token=Corpus69SessionTokenValue&x=1", "Corpus69SessionTokenValue"),
    text("k=v in a command line", "set PGPASSWORD=corpus70Pg && psql -h db", "corpus70Pg"),
    text("Google OAuth client secret", "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K", "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K"),
    text("k=v in a config line", "secret=corpus72Secret", "corpus72Secret"),
    text("Databricks token", "databricks configure --host h dapic07b27c51ee3e41607d1f8d1b6ec5e6d", "dapic07b27c51ee3e41607d1f8d1b6ec5e6d"),
    text("PyPI token", "twine upload -p pypi-AgEIcHlwaS5vcmcCorpus74YhYZCy2Aeec5YZq6l-_5kbh_wEod1A79e1fzJ-tstcwiLv8y-aFi7oiiXwyh dist/*", "pypi-AgEIcHlwaS5vcmcCorpus74YhYZCy2Aeec5YZq6l-_5kbh_wEod1A79e1fzJ-tstcwiLv8y-aFi7oiiXwyh"),
    text("Docker Hub token", "docker login -u acme -p dckr_pat_Corpus75UbyNnU4CRZvjCOMOXl4i", "dckr_pat_Corpus75UbyNnU4CRZvjCOMOXl4i"),
    text("Google OAuth token", "ya29.Corpus76Ej2vZ0FNK5an46ExHc7BJaq2QE4cZImreQ4djjoUkw_7a7cRSk00kARtptjX", "ya29.Corpus76Ej2vZ0FNK5an46ExHc7BJaq2QE4cZImreQ4djjoUkw_7a7cRSk00kARtptjX"),
    text("YAML k: v", "  db_password:   'corpus77 quoted pw'", "corpus77 quoted pw"),
    text("flag --k=v", "--db-pass=corpus78DbPass", "corpus78DbPass"),
    text("mysql -p<password>", "mysql -h orders-db -uroot -pCorpus79MysqlPw orders", "Corpus79MysqlPw"),
    text("mysql -p<password>", "sh -c '/usr/bin/mysqldump -u app -p\"Corpus80 quoted\" shop > /tmp/d.sql'", "Corpus80 quoted"),
    Leak { rule: "mysql -p<password> in arguments", shape: Shape::Args(&["/usr/bin/mariadb-dump", "-uroot", "-pCorpus81ArgvPw", "shop"]), secret: "Corpus81ArgvPw" },
];

/// Strings that look like secrets and are not: they must survive redaction byte for byte.
/// (name, value) for environment variables, `None` name for text.
#[rustfmt::skip]
pub const LOOK_ALIKES: &[(Option<&str>, &str)] = &[
    (Some("PATH"), "/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"),
    (Some("SERVER_PORT"), "8080"),
    (Some("HOME"), "/home/app"),
    (Some("LANG"), "en_US.UTF-8"),
    (Some("JAVA_VERSION"), "jdk-17.0.10+7"),
    (Some("PWD"), "/srv/app"),
    (Some("DB_PASSWORD_FILE"), "/run/secrets/db-password"),
    (Some("SSH_AUTH_SOCK"), "/tmp/ssh-XXXXk2Lw/agent.123"),
    (Some("KUBERNETES_PORT"), "tcp://10.96.0.1:443"),
    (Some("SPRING_DATASOURCE_URL"), "jdbc:postgresql://orders-db.shop.svc:5432/orders"),
    (Some("MYSQL_ALLOW_EMPTY_PASSWORD"), "yes"),
    (Some("TOKENIZERS_PARALLELISM"), "false"),
    (Some("JAVA_TOOL_OPTIONS"), "-XX:MaxRAMPercentage=75.0 -XX:+ExitOnOutOfMemoryError"),
    (Some("PASSWORD_MIN_LENGTH"), "12"),
    (None, "--password-file=/etc/mysql/password.txt"),
    (None, "--db-host=orders-db.shop.svc --port 5432"),
    (None, "-Djavax.net.ssl.keyStore=/etc/ssl/keystore.jks"),
    (None, "/api/v1/orders/5f0c6f0e-7a1d-4c62-9d7e-1a0b2c3d4e01/status"),
    (None, "/repo/.git/objects/3b/18e512dba79e4c8300dd08aeb37f8e728b8dad"),
    (None, "org.springframework.security.oauth2.server.resource.web.BearerTokenAuthenticationFilter.doFilterInternal"),
    (None, "java.security.KeyStore.getInstance"),
    (None, "Basic authentication failed for user admin"),
    (None, "Bearer token required"),
    (None, "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
    (None, "openssl-3.0.13-1ubuntu3.4"),
    (None, "pk_live_51HcorpusPublishableKeyXYZ"),
    (None, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    (None, "--password=$DB_PASSWORD"),
    (None, "https://git.example.com/acme/payments-api.git"),
    (None, "ssh://git@github.com/acme/repo.git"),
    (None, "token_endpoint=https://login.example.com/oauth2/token"),
    (None, "GET /api/v1/products?page=2&size=50"),
    (None, "host: db:5432"),
    (None, "key=/etc/tls/server.key"),
    (None, "session=active"),
    (None, "AUTH_TYPE=oauth2"),
    (None, "com.fasterxml.jackson.core:jackson-databind:2.15.2"),
    (None, "secretsmanager.us-east-1.amazonaws.com:443"),
    (None, "/var/run/secrets/kubernetes.io/serviceaccount/token"),
    (None, "--api-key-file /etc/keys/api"),
    (None, "/etc/passwd"),
    (None, "password_reset_url=https://shop.example.com/reset"),
    (None, "X-Request-Id: 6f1c2b9e-3d4a-4e5f-8a7b-1c2d3e4f5a6b"),
    (None, "v1.2.3-rc.1+build.5"),
    (None, "keytool -list -keystore /etc/ssl/ks.jks"),
    (None, "Content-Type: application/json"),
    (None, "mysql -h orders-db -P3306 -uapp -p orders"),
    (None, "ssh -p 2222 deploy@bastion"),
    (None, "tar -pxf /tmp/backup.tar"),
    (None, "mysqld --port=3306 -pidfile"),
];
