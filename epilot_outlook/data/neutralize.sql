-- A neutralized copy must never talk to the production tenant: drop the app's client secret everywhere, drop
-- the tokens and mark connected connections disconnected. The tenant id and identity ciphertexts stay, so the
-- copy still shows whom it was linked to.
UPDATE epilot_outlook_connection
   SET outlook_client_secret_ciphertext = NULL;

UPDATE epilot_outlook_connection
   SET outlook_refresh_token_ciphertext = NULL,
       outlook_access_token_ciphertext = NULL,
       access_token_expiry = NULL,
       state = 'disconnected'
 WHERE state != 'not_connected';

-- Nor accept the production tenant's change notifications: without its clientState no notification matches.
UPDATE epilot_outlook_subscription
   SET outlook_client_state_ciphertext = NULL,
       graph_id = NULL,
       state = 'pending';
