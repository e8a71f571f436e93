//! Who may do what: bucket grants (`SetGrant`, for cluster admins and the bucket's
//! admins) and API tokens (add, list, revoke; cluster admins only). The checks that use
//! them are in `access.rs`.
//!
//! Only the shared preamble and Raft plumbing of `service.rs`; nothing of the other
//! audiences.

use cairn_proto::meta as pm;
use tonic::{Request, Response, Status};

use super::{now_secs, MetaServer};
use crate::namespace::grants::Access;
use crate::namespace::tokens::TokenRecord;
use crate::namespace::Command;

impl MetaServer {
    pub(super) async fn set_grant(
        &self,
        req: Request<pm::SetGrantRequest>,
    ) -> Result<Response<pm::SetGrantResponse>, Status> {
        bucket_call!(self, req, "SetGrant" => set_grant, bucket: Access::Admin);
        let r = req.into_inner();
        let access = Access::parse(&r.access).map_err(Status::invalid_argument)?;
        if r.user.is_empty() || r.user.len() > 256 {
            return Err(Status::invalid_argument("user must be 1-256 bytes"));
        }
        self.write(Command::SetGrant {
            bucket: r.bucket,
            user: r.user,
            access,
        })
        .await?;
        Ok(Response::new(pm::SetGrantResponse {}))
    }

    pub(super) async fn add_token(
        &self,
        req: Request<pm::AddTokenRequest>,
    ) -> Result<Response<pm::AddTokenResponse>, Status> {
        admin_call!(self, req, "AddToken" => add_token, "make API tokens");
        let r = req.into_inner();
        if !cairn_common::token::is_token_id(&r.id) {
            return Err(Status::invalid_argument(
                "a token id is 16 lowercase hex digits",
            ));
        }
        if r.user.is_empty() || r.user.len() > 256 {
            return Err(Status::invalid_argument("user must be 1-256 bytes"));
        }
        let hash: [u8; 32] = r
            .secret_hash
            .as_ref()
            .try_into()
            .map_err(|_| Status::invalid_argument("a token's secret hash is 32 bytes"))?;
        self.write(Command::AddToken {
            id: r.id.clone(),
            record: TokenRecord {
                user: r.user.clone(),
                hash,
                created: now_secs(),
            },
        })
        .await?;
        tracing::info!(token_id = r.id, user = r.user, "API token added");
        Ok(Response::new(pm::AddTokenResponse {}))
    }

    pub(super) async fn list_tokens(
        &self,
        req: Request<pm::ListTokensRequest>,
    ) -> Result<Response<pm::ListTokensResponse>, Status> {
        admin_call!(self, req, "ListTokens" => list_tokens, "list API tokens");
        let tokens = self
            .read(|ns| {
                ns.tokens()
                    .into_iter()
                    .map(|(id, t)| pm::TokenInfo {
                        id,
                        user: t.user,
                        created: t.created,
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(pm::ListTokensResponse { tokens }))
    }

    pub(super) async fn revoke_token(
        &self,
        req: Request<pm::RevokeTokenRequest>,
    ) -> Result<Response<pm::RevokeTokenResponse>, Status> {
        admin_call!(self, req, "RevokeToken" => revoke_token, "revoke API tokens");
        let id = req.into_inner().id;
        self.write(Command::RevokeToken { id: id.clone() }).await?;
        tracing::info!(token_id = id, "API token revoked");
        Ok(Response::new(pm::RevokeTokenResponse {}))
    }
}
