//! moto's EC2 server on 127.0.0.1, one per test, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_port};

/// One recorded request's parameters, decoded (`Action`, `ImageId`, ...).
pub type Call = std::collections::BTreeMap<String, String>;

pub struct Moto {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let moto = Moto { port, dir, child };
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "moto did not start"
        );
        let ready = super::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            moto.get("/moto-api/")
                .is_some_and(|s| s.starts_with("HTTP/1.1 200") || s.starts_with("HTTP/1.0 200"))
        });
        assert!(ready, "moto did not become ready");
        moto.post("/moto-api/recorder/reset-recording");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn recording_path(&self) -> PathBuf {
        self.dir.path().join("recording.jsonl")
    }

    fn request(&self, method: &str, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    pub fn get(&self, path: &str) -> Option<String> {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> Option<String> {
        self.request("POST", path)
    }

    /// EC2 API requests the server received from anything but the test's own
    /// helpers (the sshd key lookup identifies itself by User-Agent).
    pub fn api_requests(&self) -> Vec<String> {
        let body = self
            .get("/moto-api/recorder/download-recording")
            .unwrap_or_default();
        let body = body
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !l.contains("/moto-api/"))
            .filter(|l| !l.contains("imgbuild-test-authorized-keys"))
            .map(str::to_string)
            .collect()
    }
}

impl Moto {
    /// The parameters of each recorded EC2 request, decoded, in order.
    pub fn all_calls(&self) -> Vec<Call> {
        use base64::Engine as _;
        self.api_requests()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|record| {
                let body = record["body"].as_str()?.to_string();
                let body = if record["body_encoded"].as_bool() == Some(true) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .ok()?;
                    String::from_utf8(bytes).ok()?
                } else {
                    body
                };
                Some(
                    form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect(),
                )
            })
            .collect()
    }

    /// The parameters of every `action` call imgbuild made (`RunInstances`), in order.
    pub fn calls(&self, action: &str) -> Vec<Call> {
        self.all_calls()
            .into_iter()
            .filter(|params| params.get("Action").map(String::as_str) == Some(action))
            .collect()
    }

    /// The `Action` of each recorded EC2 request (`DescribeImages`), in order.
    pub fn api_actions(&self) -> Vec<String> {
        self.all_calls()
            .into_iter()
            .filter_map(|mut params| params.remove("Action"))
            .collect()
    }

    /// Fails unless nothing but the test itself reached the server: what
    /// `validate` and other offline commands must hold to.
    pub fn assert_no_requests(&self, context: &str) {
        assert_eq!(self.api_requests(), Vec::<String>::new(), "{context}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Stops the server for good: every later EC2 call fails to connect.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A test-side EC2 client for `region`, to look at what a build left.
    pub fn ec2(&self, region: &str) -> Ec2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::from_conf(config),
            runtime,
        }
    }
}

impl Moto {
    /// Every IAM role and instance profile, by name: a build's temporary
    /// ones must be gone when it ends. (IAM is global: one endpoint serves it.)
    pub fn iam_names(&self) -> (Vec<String>, Vec<String>) {
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        let iam = aws_sdk_iam::Client::from_conf(config);
        let ec2 = self.ec2("us-east-1");
        let roles = ec2
            .block(iam.list_roles().send())
            .expect("ListRoles")
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect();
        let profiles = ec2
            .block(iam.list_instance_profiles().send())
            .expect("ListInstanceProfiles")
            .instance_profiles()
            .iter()
            .map(|p| p.instance_profile_name().to_string())
            .collect();
        (roles, profiles)
    }

    /// Sets the String parameter `name` in `region`'s SSM to `value`, as a
    /// team publishing its base AMI would (overwriting what was there).
    pub fn put_ssm_parameter(&self, region: &str, name: &str, value: &str) {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(aws_sdk_ssm::config::Region::new(region.to_string()))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        let ssm = aws_sdk_ssm::Client::from_conf(config);
        self.ec2(region)
            .block(
                ssm.put_parameter()
                    .name(name)
                    .value(value)
                    .r#type(aws_sdk_ssm::types::ParameterType::String)
                    .overwrite(true)
                    .send(),
            )
            .expect("PutParameter");
    }
}

/// Account id of every resource moto makes.
pub const ACCOUNT: &str = "123456789012";

/// Blocking EC2 queries for assertions.
pub struct Ec2 {
    pub client: aws_sdk_ec2::Client,
    runtime: tokio::runtime::Runtime,
}

pub fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

impl Ec2 {
    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Images owned by the account (the default AMIs are not).
    pub fn own_images(&self) -> Vec<aws_sdk_ec2::types::Image> {
        self.block(self.client.describe_images().owners("self").send())
            .expect("DescribeImages")
            .images()
            .to_vec()
    }

    /// Snapshots owned by the account. moto ignores OwnerIds, so filter on owner-id.
    pub fn own_snapshots(&self) -> Vec<aws_sdk_ec2::types::Snapshot> {
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name("owner-id")
            .values(ACCOUNT)
            .build();
        self.block(self.client.describe_snapshots().filters(filter).send())
            .expect("DescribeSnapshots")
            .snapshots()
            .to_vec()
    }

    pub fn instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .block(self.client.describe_instances().send())
            .expect("DescribeInstances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect()
    }

    /// Instances that are not terminated (pending, running, stopping, stopped, shutting-down).
    fn live(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        self.instances()
            .into_iter()
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
            .collect()
    }

    /// Live instances as "id state", for messages that show why one counts.
    pub fn live_instances(&self) -> Vec<String> {
        self.live()
            .iter()
            .map(|i| {
                format!(
                    "{} {:?}",
                    i.instance_id().unwrap_or_default(),
                    i.state().and_then(|s| s.name())
                )
            })
            .collect()
    }

    pub fn live_instance_ids(&self) -> Vec<String> {
        self.live()
            .iter()
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect()
    }

    /// Volume ids, whatever their state, sorted: to compare with a
    /// baseline taken before a build, which must leave none behind.
    /// The region's default VPC.
    pub fn default_vpc(&self) -> String {
        let out = self
            .block(
                self.client
                    .describe_vpcs()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("is-default")
                            .values("true")
                            .build(),
                    )
                    .send(),
            )
            .expect("DescribeVpcs");
        out.vpcs()[0].vpc_id().expect("vpc id").to_string()
    }

    pub fn volume_ids(&self) -> Vec<String> {
        let out = self
            .block(self.client.describe_volumes().send())
            .expect("DescribeVolumes");
        let mut ids: Vec<String> = out
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id())
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    }

    pub fn key_pair_names(&self) -> Vec<String> {
        let out = self
            .block(self.client.describe_key_pairs().send())
            .expect("DescribeKeyPairs");
        out.key_pairs()
            .iter()
            .filter_map(|k| k.key_name())
            .map(str::to_string)
            .collect()
    }

    /// Key pairs named like the ones imgbuild makes.
    pub fn imgbuild_key_pairs(&self) -> Vec<String> {
        self.key_pair_names()
            .into_iter()
            .filter(|k| k.starts_with("imgbuild"))
            .collect()
    }

    /// Ids of the security groups named like the ones imgbuild makes.
    pub fn imgbuild_security_groups(&self) -> Vec<String> {
        let out = self
            .block(self.client.describe_security_groups().send())
            .expect("DescribeSecurityGroups");
        out.security_groups()
            .iter()
            .filter(|g| g.group_name().is_some_and(|n| n.starts_with("imgbuild")))
            .filter_map(|g| g.group_id())
            .map(str::to_string)
            .collect()
    }
}

/// Dummy credentials and moto's endpoint; HOME is the test's folder, so
/// nothing comes from the developer's own AWS setup. `None` removes a variable.
pub fn aws_vars(endpoint: &str, home: &Path) -> Vec<(&'static str, Option<String>)> {
    let mut vars: Vec<(&'static str, Option<String>)> = [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ]
    .into_iter()
    .map(|var| (var, None))
    .collect();
    vars.extend([
        ("AWS_ENDPOINT_URL", Some(endpoint.to_string())),
        ("AWS_ACCESS_KEY_ID", Some("test".into())),
        ("AWS_SECRET_ACCESS_KEY", Some("test".into())),
        ("AWS_EC2_METADATA_DISABLED", Some("true".into())),
        ("HOME", Some(home.display().to_string())),
        (
            "CI_COMMIT_SHA",
            Some("0123456789abcdef0123456789abcdef01234567".into()),
        ),
        (
            "CI_PIPELINE_URL",
            Some("https://gitlab.example.com/web/-/pipelines/42".into()),
        ),
    ]);
    vars
}

/// Sets `aws_vars` on a command.
pub fn aws_env(cmd: &mut Command, endpoint: &str, home: &Path) {
    for (key, value) in aws_vars(endpoint, home) {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
}
