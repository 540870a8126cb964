//! What another SSH client needs to reach the machine this connection
//! reaches (Ansible's `ssh`): read from the connection, never used by it.

use super::{Communicator, Credential, Endpoint, SshError};

/// The connection as another client should repeat it.
#[derive(Debug, Clone)]
pub struct ConnectionDetails {
    /// Host, port, user and key of the machine.
    pub endpoint: Endpoint,
    pub bastion: Option<Endpoint>,
    /// The host key the server presented (`ssh-ed25519 AAAA…`), when the
    /// template pins it: another client must accept this key only.
    pub pinned_host_key: Option<String>,
}

impl Endpoint {
    /// The private key in OpenSSH form, when the login uses one (not the agent).
    pub fn private_key(&self) -> Option<&str> {
        match &self.credential {
            Credential::Key { private_pem, .. } => Some(private_pem),
            Credential::Agent => None,
        }
    }
}

impl Communicator {
    /// How this connection reaches its machine. The pinned host key is the
    /// one this session verified against the template's fingerprint.
    pub async fn connection_details(&self) -> Result<ConnectionDetails, SshError> {
        let target = self.target.clone();
        let pinned_host_key = match &target.host_key_fingerprint {
            None => None,
            Some(_) => {
                self.on_connection(|c, _| {
                    Ok(c.session.host_key().and_then(|(blob, _)| {
                        let key = ssh_key::PublicKey::from_bytes(blob).ok()?;
                        key.to_openssh().ok()
                    }))
                })
                .await?
            }
        };
        Ok(ConnectionDetails {
            endpoint: target.endpoint.clone(),
            bastion: target.bastion.clone(),
            pinned_host_key,
        })
    }
}
